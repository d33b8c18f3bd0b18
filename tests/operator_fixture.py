"""The operator under test: the in-cluster one of the shipped manifests (a pytest plugin).

`make kind-deploy` (or the `kube` fixture) installs manifests/overlays/kind, whose operator pod
watches every namespace. During a session it watches only the demo's namespace (a running demo
goes on, and tests that expect no operator get none), and for each test that asks for the
`operator` fixture, only the test's namespace (LOOPWRIGHT_NAMESPACES in its ConfigMap) with its pod
replaced, so every such test meets a fresh operator that sees only its own objects, as the tests
that kill and restart it need. At the end of the session it watches what it watched before.

`env` holds overrides of the operator container's environment, applied by `restart()`; each
test starts from the shipped environment. `stop(kill=True)` deletes the pod with no grace period
(a crash) and its Deployment replaces it, which `start()` waits for; `scale_down()` leaves no
operator at all until `start()`. `log()` is every operator pod's output during the test. The S3
credentials Secret is copied into the test namespace: pods can only reference Secrets of their own
namespace.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

REPO = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "loopwright-system"
DEPLOYMENT = "loopwright-operator"
CONFIG = "loopwright-config"
OPERATOR_LABELS = "app.kubernetes.io/name=loopwright-operator"
S3_SECRET = (OPERATOR_NAMESPACE, "loopwright-s3")
CREDENTIALS_SECRET = S3_SECRET[1]
# The opt-in ClusterRole that lets the operator read a Secret a Dataset or DriftPolicy names.
SECRET_READER = "loopwright-operator-secrets"
DEMO_NAMESPACE = "loopwright-demo"


def _shipped_env() -> list[dict[str, Any]]:
    manager = yaml.safe_load((REPO / "manifests" / "base" / "manager" / "manager.yaml").read_text())
    (container,) = manager["spec"]["template"]["spec"]["containers"]
    env: list[dict[str, Any]] = container["env"]
    return env


def _ready(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


@dataclass
class Operator:
    """The in-cluster operator, scoped to one namespace for one test."""

    kube: Any  # the session's conftest.Kube
    namespace: str
    env: dict[str, str] = field(default_factory=dict)
    in_cluster: bool = True
    _logs: list[str] = field(default_factory=list, repr=False)
    _applied: tuple[str, tuple[tuple[str, str], ...]] | None = field(default=None, repr=False)
    _since: datetime = field(default_factory=lambda: datetime.now(UTC), repr=False)

    def pods(self) -> list[Any]:
        pods = self.kube.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_LABELS)
        return list(pods.items)

    def pod(self) -> Any:
        """The Ready operator pod (waits for it)."""
        return self.kube.wait(lambda: next((p for p in self.pods() if _ready(p)), None), timeout=180,
                              what="the in-cluster operator to be Ready")

    def start(self) -> None:
        """Wait for a Ready operator pod started after the last stop; first apply the scope and the
        environment and replace the pod, when either changed since the last start."""
        wanted = (self.namespace, tuple(sorted(self.env.items())))
        self.kube.apps.patch_namespaced_deployment_scale(DEPLOYMENT, OPERATOR_NAMESPACE,
                                                         {"spec": {"replicas": 1}})
        if self._applied != wanted:
            self.kube.core.patch_namespaced_config_map(CONFIG, OPERATOR_NAMESPACE,
                                                       {"data": {"LOOPWRIGHT_NAMESPACES": self.namespace}})
            env = [e for e in _shipped_env() if e["name"] not in self.env]
            env += [{"name": k, "value": v} for k, v in self.env.items()]
            deployment = self.kube.apps.read_namespaced_deployment(DEPLOYMENT, OPERATOR_NAMESPACE)
            current = next(c for c in deployment.spec.template.spec.containers if c.name == "operator").env
            if self.kube.api.sanitize_for_serialization(current) != env:
                # A JSON patch replaces the list whole (a merge would keep a removed override).
                self.kube.apps.patch_namespaced_deployment(DEPLOYMENT, OPERATOR_NAMESPACE, [
                    {"op": "replace", "path": "/spec/template/spec/containers/0/env", "value": env}])
            self._delete_pods(kill=True, keep_log=False)  # its log is of an earlier scope
            self._applied = wanted
        self.kube.wait(lambda: next((p for p in self.pods() if _ready(p)
                                     and p.metadata.creation_timestamp >= self._since), None),
                       timeout=180, what=f"a fresh in-cluster operator for {self.namespace}")

    def stop(self, *, kill: bool = False) -> None:
        """Delete the operator pod (grace 0 with kill: a crash); its Deployment starts another."""
        self._delete_pods(kill=kill, keep_log=True)

    def _delete_pods(self, *, kill: bool, keep_log: bool) -> None:
        self._since = datetime.now(UTC).replace(microsecond=0)
        for pod in self.pods():
            if pod.metadata.deletion_timestamp is None:
                if keep_log:
                    self._logs.append(self._pod_log(pod.metadata.name))
                self.kube.core.delete_namespaced_pod(pod.metadata.name, OPERATOR_NAMESPACE,
                                                     grace_period_seconds=0 if kill else 30)

    def scale_down(self, *, kill: bool = False) -> None:
        """No operator at all until `start()` (replicas 0; kill: its pod dies with no grace)."""
        self.kube.apps.patch_namespaced_deployment_scale(DEPLOYMENT, OPERATOR_NAMESPACE,
                                                         {"spec": {"replicas": 0}})
        self.stop(kill=kill)
        self.kube.wait(lambda: not self.pods(), timeout=60, what="the operator pod to be gone")

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def allow_secrets(self) -> None:
        """The per-namespace opt-in of the README: the operator may read Secrets here, by name."""
        self.kube.rbac.create_namespaced_role_binding(self.namespace, {
            "metadata": {"name": SECRET_READER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": SECRET_READER},
            "subjects": [{"kind": "ServiceAccount", "name": DEPLOYMENT, "namespace": OPERATOR_NAMESPACE}]})

    def log(self) -> str:
        current = [self._pod_log(p.metadata.name) for p in self.pods()
                   if p.metadata.deletion_timestamp is None]
        return "\n".join(self._logs + current)

    def _pod_log(self, name: str) -> str:
        try:
            return str(self.kube.logs(OPERATOR_NAMESPACE, name))
        except client.exceptions.ApiException:  # gone, or not started yet
            return ""


def _copy_credentials(kube: Any, namespace: str) -> None:
    source = kube.core.read_namespaced_secret(S3_SECRET[1], S3_SECRET[0])
    body = {"metadata": {"name": CREDENTIALS_SECRET}, "type": source.type, "data": source.data}
    try:
        kube.core.create_namespaced_secret(namespace, body)
    except client.exceptions.ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="session")
def operator_scope(kube: Any) -> Iterator[None]:
    """For the session, the operator keeps off the tests' namespaces (it watches only the demo's,
    so a demo can go on) unless a test asks for it; then its scope and environment are put back."""
    config = kube.core.read_namespaced_config_map(CONFIG, OPERATOR_NAMESPACE)
    before = (config.data or {}).get("LOOPWRIGHT_NAMESPACES", "")
    Operator(kube=kube, namespace=DEMO_NAMESPACE).start()
    yield
    Operator(kube=kube, namespace=before).start()


@pytest.fixture(autouse=True)
def _operator_off_other_tests(request: pytest.FixtureRequest) -> None:
    """Every cluster test runs with the operator scoped (a cluster-wide one, left by `make demo` or a
    fresh install, would reconcile the objects of tests that expect no operator)."""
    if request.node.get_closest_marker("cluster"):
        request.getfixturevalue("operator_scope")


@pytest.fixture
def operator(kube: Any, crds: dict[str, Any], s3: Any, namespace: str, operator_scope: None,
             request: pytest.FixtureRequest) -> Iterator[Operator]:
    """The in-cluster Loopwright operator, watching only this test's namespace."""
    _copy_credentials(kube, namespace)
    handle = Operator(kube=kube, namespace=namespace)
    handle.start()
    yield handle
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stderr.write(f"\n--- operator log ({namespace}) ---\n{handle.log()[-20000:]}\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can show the operator log on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
