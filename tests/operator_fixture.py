"""The operator under test, shared by every end-to-end test (a pytest plugin loaded by conftest).

By default each test gets its own operator process watching only the test's
namespace (``python -m loopwright.operator.main``, the container entry point), so tests
stay independent and can kill and restart it. With
``LOOPWRIGHT_E2E_OPERATOR=in-cluster`` the operator is the one deployed in the
cluster (``make kind-deploy`` or the local overlay): the fixture then only
checks it is running, and ``restart()`` deletes its pod.

The operator talks to S3 at the host's endpoint (boto3's ``AWS_ENDPOINT_URL``)
while the Jobs and predictors it starts use the in-cluster Service
(``LOOPWRIGHT_S3_ENDPOINT``); the credentials Secret is copied into the test
namespace because pods can only reference Secrets of their own namespace.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "loopwright-system"
OPERATOR_LABELS = "app.kubernetes.io/name=loopwright-operator"
S3_SECRET = (OPERATOR_NAMESPACE, "loopwright-s3")
CREDENTIALS_SECRET = S3_SECRET[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Operator:
    """One operator process for one namespace; restartable, with its log kept for failures."""

    kube: Any  # the session's conftest.Kube
    namespace: str
    env: dict[str, str]
    log_path: Path
    in_cluster: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.in_cluster:
            self._wait_in_cluster_ready()
            return
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loopwright.operator.main"], env=self.env, stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + 60
        port = int(self.env["LOOPWRIGHT_METRICS_PORT"])
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the operator did not serve /healthz within 60 s:\n{self.log()}")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a graceful stop), or SIGKILL to simulate a crash mid-reconcile."""
        if self.in_cluster:
            self._delete_in_cluster_pods(grace=0 if kill else 30)
            return
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _pods(self) -> list[Any]:
        pods = self.kube.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_LABELS)
        return list(pods.items)

    def _wait_in_cluster_ready(self) -> None:
        def ready() -> bool:
            return any(any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
                       for p in self._pods() if p.metadata.deletion_timestamp is None)
        self.kube.wait(ready, timeout=180, what="the in-cluster operator to be Ready")

    def _delete_in_cluster_pods(self, *, grace: int) -> None:
        for pod in self._pods():
            self.kube.core.delete_namespaced_pod(
                pod.metadata.name, OPERATOR_NAMESPACE, grace_period_seconds=grace)


def _copy_credentials(kube: Any, namespace: str) -> None:
    source = kube.core.read_namespaced_secret(S3_SECRET[1], S3_SECRET[0])
    body = {"metadata": {"name": CREDENTIALS_SECRET}, "type": source.type, "data": source.data}
    try:
        kube.core.create_namespaced_secret(namespace, body)
    except client.exceptions.ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture
def operator(kube: Any, crds: dict[str, Any], s3: Any, namespace: str,
             tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Operator]:
    """A running Loopwright operator for this test's namespace (stopped afterwards)."""
    _copy_credentials(kube, namespace)
    in_cluster = os.environ.get("LOOPWRIGHT_E2E_OPERATOR") == "in-cluster"
    env = {
        **os.environ,
        "KUBECONFIG": kube.kubeconfig,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": s3.region,
        "LOOPWRIGHT_NAMESPACES": namespace,
        "LOOPWRIGHT_S3_ENDPOINT": s3.in_cluster,
        "LOOPWRIGHT_S3_SECRET": f"{namespace}/{CREDENTIALS_SECRET}",
        "LOOPWRIGHT_METRICS_PORT": str(_free_port()),
    }
    handle = Operator(kube=kube, namespace=namespace, env=env, log_path=tmp_path / "operator.log",
                      in_cluster=in_cluster)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            sys.stderr.write(f"\n--- operator log ({namespace}) ---\n{handle.log()[-20000:]}\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can show the operator log on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
