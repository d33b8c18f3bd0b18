"""A bare Kubernetes control plane on this host: etcd and kube-apiserver, nothing else.

For the benchmarks' ``--control-plane-only`` mode where no kind cluster can be had (or must not be
touched): the binaries are the ones ``make kind-node`` caches under ~/.cache/loopwright (the kind
node's Kubernetes version). The API server serves on a free port of 127.0.0.1 with the certificate
it generates (verified against the CA it generates with it), knows one static token
(system:masters) and authorizes everything. No controller manager, scheduler or kubelet: objects
are stored and watched, Jobs are not run, namespaces are not emptied when deleted. Everything lives
in a temporary directory removed on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import requests
import urllib3

CACHE = Path(os.environ.get("LOOPWRIGHT_CACHE", Path.home() / ".cache" / "loopwright"))
TOKEN = "lw-bench-token"


def _binary(name: str) -> Path:
    """The newest cached copy of a control-plane binary (kubernetes-v*/bin, etcd-v*/bin)."""
    prefix = "etcd" if name == "etcd" else "kubernetes"
    found = sorted(CACHE.glob(f"{prefix}-v*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"no {name} under {CACHE}/{prefix}-v*/bin: build the kind node first "
                                "(make kind-node), which caches it")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(url: str, *, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited ({process.returncode}); see {log}")
        with suppress(requests.RequestException):
            if requests.get(f"{url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}, verify=False,
                            timeout=2).ok:
                return
        time.sleep(0.5)
    raise TimeoutError(f"kube-apiserver not ready after {timeout:.0f}s; see {log}")


@contextmanager
def local_control_plane() -> Iterator[Path]:
    """Start etcd and kube-apiserver; yields the path of a kubeconfig for them; stops both on exit."""
    with tempfile.TemporaryDirectory(prefix="lw-control-plane-") as tmp:
        root = Path(tmp)
        sa_key = root / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        (root / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
        client_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        etcd = _start([str(_binary("etcd")), "--data-dir", str(root / "etcd"), "--listen-client-urls",
                       etcd_url, "--advertise-client-urls", etcd_url, "--listen-peer-urls",
                       f"http://127.0.0.1:{peer_port}", "--log-level", "warn"], root / "etcd.log")
        apiserver: subprocess.Popen[bytes] | None = None
        try:
            apiserver = _start([
                str(_binary("kube-apiserver")), "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
                "--secure-port", str(api_port), "--cert-dir", str(root / "certs"),
                "--token-auth-file", str(root / "tokens.csv"), "--authorization-mode", "AlwaysAllow",
                "--service-account-key-file", str(sa_key), "--service-account-signing-key-file", str(sa_key),
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-cluster-ip-range", "10.96.0.0/16", "--advertise-address", "127.0.0.1",
            ], root / "apiserver.log")
            url = f"https://127.0.0.1:{api_port}"
            _wait_ready(url, process=apiserver, log=root / "apiserver.log")
            # The server's self-signed certificate is issued by a CA it writes after it: verified as on
            # kind (an unverified client warns on every request, which costs a Python client time).
            chain = (root / "certs" / "apiserver.crt").read_text()
            begin = "-----BEGIN CERTIFICATE-----"
            (root / "ca.crt").write_text(begin + chain.split(begin)[-1])
            kubeconfig = root / "kubeconfig"
            kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\ncurrent-context: local\n"
                f"clusters: [{{name: local, cluster: {{server: \"{url}\", "
                f"certificate-authority: \"{root / 'ca.crt'}\"}}}}]\n"
                f"users: [{{name: admin, user: {{token: {TOKEN}}}}}]\n"
                "contexts: [{name: local, context: {cluster: local, user: admin, namespace: default}}]\n")
            yield kubeconfig
        finally:
            if apiserver is not None:
                _stop(apiserver)
            _stop(etcd)
