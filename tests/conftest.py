"""Shared fixtures: a real Kubernetes cluster for the tests marked `cluster`.

With KUBECONFIG pointing at a reachable cluster (kind, or a local cluster already up) the tests
use it and leave it running. Otherwise the session starts the project's own local cluster
(tests/cluster/cluster.py up) and stops it at the end, unless LOOPWRIGHT_KEEP_CLUSTER=1.
A cluster that cannot start fails the session loudly; LOOPWRIGHT_SKIP_CLUSTER=1 skips instead.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from kubernetes import client, config

from crd_install import Crd, install_crds

REPO = Path(__file__).resolve().parents[1]
LOCAL_STATE = REPO / ".cluster"
_CLUSTER_PY = [sys.executable, str(REPO / "tests" / "cluster" / "cluster.py")]
IN_CLUSTER_S3 = "http://s3.loopwright-system.svc:9000"
S3_SECRET = ("loopwright-system", "loopwright-s3")
T = TypeVar("T")
# The `operator` fixture (the Loopwright operator process for one test namespace).
pytest_plugins = ("operator_fixture",)


@dataclass(frozen=True)
class Kube:
    """A connected cluster: typed API groups plus the few waits every e2e test needs."""

    kubeconfig: str
    local: bool  # the project's own cluster (host processes, lw0 bridge), not kind
    api: Any  # kubernetes.client.ApiClient

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
        """Create a pod (restartPolicy Never) and wait until it Succeeded or Failed; return it."""
        pod.setdefault("apiVersion", "v1")
        pod.setdefault("kind", "Pod")
        pod["spec"].setdefault("restartPolicy", "Never")
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
        """Run kubectl: the one built with the local cluster (same version) if there is one."""
        cache = os.environ.get("LOOPWRIGHT_CACHE", str(Path.home() / ".cache" / "loopwright"))
        built = Path(cache) / "bin" / "kubectl"
        binary = str(built) if built.exists() else "kubectl"
        return subprocess.run([binary, f"--kubeconfig={self.kubeconfig}", *args],
                              check=check, capture_output=True, text=True, timeout=120)


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
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        with api:
            client.VersionApi(api).get_code(_request_timeout=5)
    except Exception:  # any failure means unusable; the caller says so
        return False
    return True


def _local_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (LOCAL_STATE / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = shlex.split(value)[0] if value else ""
    return values


def _cluster(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_CLUSTER_PY, command], check=False, capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The cluster for this session: the one KUBECONFIG points at, or the local one."""
    if os.environ.get("LOOPWRIGHT_SKIP_CLUSTER") == "1":
        pytest.skip("LOOPWRIGHT_SKIP_CLUSTER=1")
    local_kubeconfig = str(LOCAL_STATE / "admin.kubeconfig")
    kubeconfig = os.environ.get("KUBECONFIG", "")
    started = False
    if not (kubeconfig and _reachable(kubeconfig)):
        if kubeconfig:
            print(f"KUBECONFIG={kubeconfig} is not reachable: using the local cluster", file=sys.stderr)
        kubeconfig = local_kubeconfig
        # A cluster someone else started stays theirs, even if `up` restarts a component of it.
        running = Path(kubeconfig).exists() and _reachable(kubeconfig)
        if not running or _cluster("status").returncode != 0:
            result = _cluster("up")
            if result.returncode != 0:
                pytest.fail(f"the local cluster did not start (cluster.py up exit {result.returncode}):\n"
                            f"{result.stdout}\n{result.stderr}", pytrace=False)
            started = not running and os.environ.get("LOOPWRIGHT_KEEP_CLUSTER") != "1"
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = kubeconfig  # for kubectl and operator subprocesses the tests start
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        yield Kube(kubeconfig=kubeconfig, local=Path(kubeconfig).resolve() == Path(local_kubeconfig), api=api)
    finally:
        api.close()
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved
        if started:
            _cluster("down")


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (with everything in it) afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"loopwright.dev/test": "true"}}})
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
    """S3 endpoint and credentials: from .cluster/env locally, from AWS_* variables elsewhere."""
    if kube.local:
        env = _local_env()
    elif os.environ.get("AWS_ENDPOINT_URL"):
        env = dict(os.environ)
    else:
        pytest.skip("no S3 for this cluster: set AWS_ENDPOINT_URL and credentials")
    return S3(endpoint=env["AWS_ENDPOINT_URL"], in_cluster=IN_CLUSTER_S3,
              access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
              region=env.get("AWS_DEFAULT_REGION", "us-east-1"))
