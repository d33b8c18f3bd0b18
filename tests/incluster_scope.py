"""pytest plugin (`-p incluster_scope`): the in-cluster operator watches only this session's test namespaces.

With ``LOOPWRIGHT_E2E_OPERATOR=in-cluster`` the tests use the operator deployed in the cluster,
which watches every namespace. On a cluster that other test sessions use at the same time (the
developers' shared local cluster) it would also reconcile their namespaces, next to their own
operator processes. This plugin sets ``LOOPWRIGHT_NAMESPACES`` of the operator's ConfigMap to the
namespace each test has just created and restarts the operator (strategy Recreate: one pod at a
time), so the in-cluster pod, its ServiceAccount and RBAC are exercised without touching anyone
else's objects. Not needed on a cluster of one's own (kind in CI).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import pytest

SYSTEM = "loopwright-system"
DEPLOYMENT = "loopwright-operator"
LABELS = "app.kubernetes.io/name=loopwright-operator"


def _scope(kube: Any, namespace: str) -> None:
    kube.core.patch_namespaced_config_map("loopwright-config", SYSTEM,
                                          {"data": {"LOOPWRIGHT_NAMESPACES": namespace}})
    since = datetime.now(UTC).replace(microsecond=0)
    kube.apps.patch_namespaced_deployment(DEPLOYMENT, SYSTEM, {"spec": {"template": {"metadata": {
        "annotations": {"loopwright.dev/e2e-scope": f"{namespace}-{int(time.time())}"}}}}})

    def restarted() -> bool:
        for pod in kube.core.list_namespaced_pod(SYSTEM, label_selector=LABELS).items:
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            fresh = pod.metadata.creation_timestamp >= since and pod.metadata.deletion_timestamp is None
            if ready and fresh:
                return True
        return False

    kube.wait(restarted, timeout=180, what=f"the in-cluster operator restarted for namespace {namespace}")


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator[
        None, Any, Any]:
    result = yield
    if fixturedef.argname == "namespace":
        _scope(request.getfixturevalue("kube"), result)
    return result
