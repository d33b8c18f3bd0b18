"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler, started like a real cluster.

The flags follow hack/local-up-cluster.sh and kubeadm: TLS everywhere the API is served,
RBAC + Node authorization, service-account token signing, the standard admission plugins,
every default controller (with per-controller service-account credentials) and the scheduler.
Each component authenticates with its own client certificate, so RBAC applies to it as on kind.
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from pki import Cert, Pki
from procs import Proc

NODE_NAME = "loopwright-node"
NODE_IP = "10.244.0.1"  # the lw0 bridge: pods reach the host (API, DNS, S3) here
API_PORT = 6443
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
_ETCD_CLIENT = "http://127.0.0.1:2379"
_ETCD_PEER = "http://127.0.0.1:2380"
_ADMISSION = ",".join([
    "NamespaceLifecycle", "LimitRanger", "ServiceAccount", "DefaultStorageClass",
    "DefaultTolerationSeconds", "Priority", "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook", "ResourceQuota", "NodeRestriction",
])

# Client identities: file stem -> (user, groups). The kubeconfig of each is <stem>.kubeconfig.
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "coredns": ("system:coredns", ()),
}


def certs() -> list[Cert]:
    """Every certificate the control plane and the node need."""
    return [
        Cert("apiserver", "kube-apiserver", server=True,
             dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                  "kubernetes.default.svc.cluster.local", "localhost"),
             ips=("127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP)),
        # The API server's identity towards the kubelet (logs, exec); kubeadm gives it the same group.
        Cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",), client=True),
        # The node agent's HTTPS endpoint, verified by the API server against the CA.
        Cert("node-serving", f"system:node:{NODE_NAME}", ("system:nodes",), server=True,
             dns=(NODE_NAME, "localhost"), ips=(NODE_IP, "127.0.0.1")),
        # The aggregation layer's identity; also gives extension-apiserver-authentication its
        # request-header CA, which the controller manager and scheduler wait for.
        Cert("front-proxy-client", "front-proxy-client", client=True),
        *(Cert(stem, user, groups, client=True) for stem, (user, groups) in CLIENTS.items()),
    ]


def write_kubeconfigs(*, pki: Pki, directory: Path) -> None:
    """One kubeconfig per client identity, pointing at the API over loopback."""
    for stem, (user, _) in CLIENTS.items():
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "loopwright",
            "clusters": [{"name": "loopwright", "cluster": {
                "server": f"https://127.0.0.1:{API_PORT}", "certificate-authority": str(pki.ca_crt)}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(pki.crt(stem)), "client-key": str(pki.key(stem))}}],
            "contexts": [{"name": "loopwright", "context": {"cluster": "loopwright", "user": user}}],
        }
        (directory / f"{stem}.kubeconfig").write_text(yaml.safe_dump(config, sort_keys=False))


def procs(*, bins: Path, pki: Pki, state: Path) -> list[Proc]:
    """The four control-plane processes, in start order."""
    api = Api(pki=pki)
    etcd = Proc("etcd", [
        str(bins / "etcd"), "--name=loopwright", f"--data-dir={state / 'etcd'}",
        f"--listen-client-urls={_ETCD_CLIENT}", f"--advertise-client-urls={_ETCD_CLIENT}",
        f"--listen-peer-urls={_ETCD_PEER}", f"--initial-advertise-peer-urls={_ETCD_PEER}",
        f"--initial-cluster=loopwright={_ETCD_PEER}",
        "--auto-compaction-retention=1", "--quota-backend-bytes=8589934592",
        # A throw-away test cluster: fsync latency would dominate start-up and every write.
        "--unsafe-no-fsync=true", "--log-level=warn",
    ], ready=_etcd_healthy)
    apiserver = Proc("kube-apiserver", [
        str(bins / "kube-apiserver"), f"--etcd-servers={_ETCD_CLIENT}",
        "--bind-address=0.0.0.0", f"--secure-port={API_PORT}", f"--advertise-address={NODE_IP}",
        f"--tls-cert-file={pki.crt('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_crt}",
        "--authorization-mode=Node,RBAC", f"--enable-admission-plugins={_ADMISSION}",
        f"--service-account-issuer={SA_ISSUER}", f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        f"--kubelet-certificate-authority={pki.ca_crt}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--requestheader-client-ca-file={pki.ca_crt}", "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.crt('front-proxy-client')}",
        f"--proxy-client-key-file={pki.key('front-proxy-client')}",
        "--allow-privileged=true", "--profiling=false", "--v=1",
    ], ready=api.ready)
    controller_manager = Proc("kube-controller-manager", [
        str(bins / "kube-controller-manager"), *_component_auth(state / "controller-manager.kubeconfig"),
        "--bind-address=127.0.0.1", "--controllers=*", "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}", f"--root-ca-file={pki.ca_crt}",
        f"--cluster-signing-cert-file={pki.ca_crt}", f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--cluster-name=loopwright",
        "--profiling=false", "--v=1",
    ], ready=lambda: _component_healthy(10257))
    scheduler = Proc("kube-scheduler", [
        str(bins / "kube-scheduler"), *_component_auth(state / "scheduler.kubeconfig"),
        "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=1",
    ], ready=lambda: _component_healthy(10259))
    return [etcd, apiserver, controller_manager, scheduler]


def _component_auth(kubeconfig: Path) -> list[str]:
    return [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}"]


def _etcd_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{_ETCD_CLIENT}/health", timeout=2) as response:
            return bool(json.load(response).get("health") == "true")
    except (OSError, ValueError):
        return False


def _component_healthy(port: int) -> bool:
    # The component serves /healthz with a self-signed certificate; only liveness matters here.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        url = f"https://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Api:
    """A minimal admin client over TLS: readiness and server-side apply of bootstrap objects.

    The harness needs only these two calls; plain urllib keeps it independent of client versions.
    """

    def __init__(self, *, pki: Pki) -> None:
        self._context = ssl.create_default_context(cafile=str(pki.ca_crt))
        self._context.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
        self._base = f"https://127.0.0.1:{API_PORT}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self._base}/readyz", context=self._context, timeout=3) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def node_ready(self, name: str) -> bool:
        """Whether the Node exists with condition Ready=True (the node agent registered it)."""
        try:
            with urllib.request.urlopen(f"{self._base}/api/v1/nodes/{name}", context=self._context,
                                        timeout=3) as response:
                node = json.load(response)
        except (OSError, ValueError):
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply `obj` (create or update), owned by the field manager loopwright-cluster."""
        request = urllib.request.Request(
            f"{self._base}{_path(obj)}?fieldManager=loopwright-cluster&force=true",
            data=json.dumps(obj).encode(), method="PATCH",
            headers={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=10) as response:
                result: dict[str, Any] = json.load(response)
                return result
        except urllib.error.HTTPError as error:
            what = f"{obj['kind']}/{obj['metadata']['name']}"
            raise RuntimeError(f"apply {what}: {error.read().decode()}") from error


_PLURALS = {
    "Namespace": "namespaces", "Secret": "secrets", "Service": "services",
    "EndpointSlice": "endpointslices", "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
}


def _path(obj: dict[str, Any]) -> str:
    version: str = obj["apiVersion"]
    prefix = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    namespace = obj["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{scope}/{_PLURALS[obj['kind']]}/{obj['metadata']['name']}"
