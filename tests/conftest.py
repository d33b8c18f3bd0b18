"""Shared fixtures of the tests marked `cluster`: a kind cluster running Loopwright's images.

The cluster is the one `make kind-up kind-load kind-deploy` makes (`make test` runs those first):
KUBECONFIG if it points at a reachable cluster, else `.cluster/kind/kubeconfig`; when neither
answers, the session runs those make targets itself (log: .cluster/kind/bring-up.log) and leaves
the cluster running. LOOPWRIGHT_SKIP_CLUSTER=1 skips the cluster tests instead.

Fixtures, for tests to build on:
- `kube` (session): the API groups, `wait`, `run_pod`, `logs`, `kubectl`, `port_forward`.
- `namespace`: a fresh namespace per test that enforces the `restricted` Pod Security Standard, as
  a Loopwright namespace should; deleted afterwards.
- `s3` (session): the kind overlay's S3 as the host sees it (its NodePort on 127.0.0.1, kind_env.s3_endpoint)
  and as pods see it (`in_cluster`); credentials read from the Secret the overlay installs.
- `crds` (session): this checkout's CRDs, installed.
- `operator` (operator_fixture.py): the in-cluster operator of the shipped manifests, restarted
  to watch only the test's namespace; `restart(kill=True)` deletes its pod.
Pods and Services are reached from the host with `kube.port_forward` (kubectl port-forward on
127.0.0.1), never through host routes.
"""
from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from kubernetes import client, config

from crd_install import Crd, install_crds
from kind_env import KIND_KUBECONFIG, s3_endpoint

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LOOPWRIGHT_CACHE", str(Path.home() / ".cache" / "loopwright")))
IN_CLUSTER_S3 = "http://s3.loopwright-system.svc:9000"
S3_SECRET = ("loopwright-system", "loopwright-s3")
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/warn": "restricted"}
T = TypeVar("T")
# The `operator` fixture (the in-cluster Loopwright operator, scoped to one test namespace).
pytest_plugins = ("operator_fixture",)


ML_IMAGE = "loopwright/ml:0.1.0"


def restricted(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A pod spec made to meet the `restricted` Pod Security Standard the test namespaces enforce:
    uid 65532, seccomp RuntimeDefault, and per container no privilege escalation, no capabilities
    and a read-only root filesystem (settings the spec already has are kept)."""
    pod_spec.setdefault("securityContext", {}).update(
        {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
         "seccompProfile": {"type": "RuntimeDefault"}})
    for container in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        context = container.setdefault("securityContext", {})
        context.setdefault("allowPrivilegeEscalation", False)
        context.setdefault("capabilities", {"drop": ["ALL"]})
        context.setdefault("readOnlyRootFilesystem", True)
    return pod_spec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Kube:
    """A connected cluster: typed API groups plus the few waits every e2e test needs."""

    kubeconfig: str
    api: Any  # kubernetes.client.ApiClient
    forwards: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> Any:
        return client.AppsV1Api(self.api)

    @property
    def batch(self) -> Any:
        return client.BatchV1Api(self.api)

    @property
    def rbac(self) -> Any:
        return client.RbacAuthorizationV1Api(self.api)

    @property
    def discovery(self) -> Any:
        return client.DiscoveryV1Api(self.api)

    @property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.api)

    def wait(self, probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5) -> T:
        """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)

    def run_pod(self, namespace: str, pod: dict[str, Any], *, timeout: float = 120) -> Any:
        """Create a restricted pod (restartPolicy Never), wait until it Succeeded or Failed; return it."""
        pod.setdefault("apiVersion", "v1")
        pod.setdefault("kind", "Pod")
        pod["spec"].setdefault("restartPolicy", "Never")
        restricted(pod["spec"])
        name = pod["metadata"]["name"]
        self.core.create_namespaced_pod(namespace, pod)

        def finished() -> Any:
            current = self.core.read_namespaced_pod(name, namespace)
            return current if current.status.phase in {"Succeeded", "Failed"} else None

        return self.wait(finished, timeout=timeout, what=f"pod {namespace}/{name} to finish")

    @staticmethod
    def exit_code(pod: Any, *, container: int = 0) -> int:
        """The exit code of a finished pod's container (fails the test if it did not terminate)."""
        state = pod.status.container_statuses[container].state
        assert state.terminated is not None, f"container did not terminate: {state}"
        return int(state.terminated.exit_code)

    def logs(self, namespace: str, name: str, *, container: str | None = None) -> str:
        """Container output read through the API server (what `kubectl logs` shows)."""
        kwargs = {"container": container} if container else {}
        # Raw bytes: kubernetes-client 36 turns a non-JSON body into "b'...'" when it deserializes.
        response = self.core.read_namespaced_pod_log(name, namespace, _preload_content=False, **kwargs)
        return bytes(response.data).decode()

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl: the one built with the node image (same version) if there is one."""
        built = CACHE / "bin" / "kubectl"
        binary = str(built) if built.exists() else "kubectl"
        return subprocess.run([binary, f"--kubeconfig={self.kubeconfig}", *args],
                              check=check, capture_output=True, text=True, timeout=120)

    @contextmanager
    def port_forward(self, namespace: str, target: str, port: int, *,
                     timeout: float = 30) -> Iterator[str]:
        """`kubectl port-forward` to `target` (pod/NAME, svc/NAME, deployment/NAME) on a free port of
        127.0.0.1; yields "127.0.0.1:PORT" once it accepts connections, and stops it afterwards."""
        local = free_port()
        built = CACHE / "bin" / "kubectl"
        process = subprocess.Popen(
            [str(built) if built.exists() else "kubectl", f"--kubeconfig={self.kubeconfig}", "-n", namespace,
             "port-forward", "--address=127.0.0.1", target, f"{local}:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def accepting() -> bool:
                if process.poll() is not None:
                    error = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"port-forward to {namespace}/{target} ended: {error}")
                try:
                    with socket.create_connection(("127.0.0.1", local), timeout=1):
                        return True
                except OSError:
                    return False

            self.wait(accepting, timeout=timeout, what=f"port-forward to {namespace}/{target}:{port}",
                      interval=0.1)
            yield f"127.0.0.1:{local}"
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass(frozen=True)
class S3:
    """Where the artifact store is, seen from the host (`endpoint`) and from pods (`in_cluster`)."""

    endpoint: str
    in_cluster: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    bucket: str = "loopwright"

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)


def _reachable(kubeconfig: str) -> bool:
    if not Path(kubeconfig).exists():
        return False
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        with api:
            client.VersionApi(api).get_code(_request_timeout=5)
    except Exception:  # any failure means unusable; the caller says so
        return False
    return True


def _bring_up_kind() -> None:
    log = Path(KIND_KUBECONFIG).parent / "bring-up.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"no cluster answers: make kind-up kind-load kind-deploy (log: {log})", file=sys.stderr)
    with log.open("w") as out:
        result = subprocess.run(["make", "-C", str(REPO), "kind-up", "kind-load", "kind-deploy"],
                                stdout=out, stderr=subprocess.STDOUT, check=False, timeout=5400)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"bringing up kind failed (exit {result.returncode}):\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The kind cluster of this session (see the module docstring)."""
    if os.environ.get("LOOPWRIGHT_SKIP_CLUSTER") == "1":
        pytest.skip("LOOPWRIGHT_SKIP_CLUSTER=1")
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not (kubeconfig and _reachable(kubeconfig)):
        kubeconfig = KIND_KUBECONFIG
        if not _reachable(kubeconfig):
            _bring_up_kind()
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = kubeconfig  # for kubectl and the subprocesses the tests start
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        yield Kube(kubeconfig=kubeconfig, api=api)
    finally:
        api.close()
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (with everything in it) afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    labels = {"loopwright.dev/test": "true", **RESTRICTED}
    kube.core.create_namespace({"metadata": {"name": name, "labels": labels}})
    # Pods are rejected until the service-account controller has made `default`.
    kube.wait(lambda: _has_default_sa(kube, name), timeout=30, what=f"ServiceAccount {name}/default")
    try:
        yield name
    finally:
        kube.core.delete_namespace(name, propagation_policy="Background")


def _has_default_sa(kube: Kube, namespace: str) -> bool:
    names = {sa.metadata.name for sa in kube.core.list_namespaced_service_account(namespace).items}
    return "default" in names


@pytest.fixture(scope="session")
def crds(kube: Kube) -> dict[str, Crd]:
    """This checkout's CRDs, installed and Established; kinds -> where they are served."""
    served = install_crds(kube.api)
    if not served:
        pytest.fail("no CRDs in crds/: run `make crds`")
    return served


@pytest.fixture(scope="session")
def s3(kube: Kube) -> S3:
    """The kind overlay's S3: NodePort on 127.0.0.1 for the host, the Service for pods."""
    secret = kube.core.read_namespaced_secret(S3_SECRET[1], S3_SECRET[0]).data
    return S3(endpoint=s3_endpoint(), in_cluster=IN_CLUSTER_S3,
              access_key=base64.b64decode(secret["AWS_ACCESS_KEY_ID"]).decode(),
              secret_key=base64.b64decode(secret["AWS_SECRET_ACCESS_KEY"]).decode())
