"""Every CEL rule of our CRDs, checked by the real API server: it rejects the bad, accepts the good.

The cases live in tests/cel_cases.py as (kind, description, object, should_be_accepted, old).
Each case is created for real (no dry run) under a name of its own in one namespace for the
table (custom objects need no service account, and 80 namespaces would only churn the
namespace controller); a case with `old` creates that first and then replaces it with `object`
(update rules such as ModelVersion immutability).
A rejection must be a 422 Invalid, not some other failure that would hide a typo in a case.
"""
from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from conftest import Crd, Kube

cel_cases = pytest.importorskip("cel_cases", reason="tests/cel_cases.py not written yet")

pytestmark = pytest.mark.cluster
CASES = list(cel_cases.CASES)


def _manifest(kind: str, crd: Crd, obj: dict[str, Any], name: str) -> dict[str, Any]:
    """The case's object under a fixed name, at the version the API serves."""
    body: dict[str, Any] = copy.deepcopy(obj)
    body["apiVersion"] = f"{crd.group}/{crd.version}"
    body["kind"] = kind
    body["metadata"] = {**body.get("metadata", {}), "name": name}
    body["metadata"].pop("namespace", None)
    return body


def _create(kube: Kube, crd: Crd, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = kube.custom.create_namespaced_custom_object(
        crd.group, crd.version, namespace, crd.plural, body)
    return created


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


@pytest.fixture(scope="module")
def table_namespace(kube: Kube) -> Iterator[str]:
    name = f"t-cel-cases-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"loopwright.dev/test": "true"}}})
    yield name
    kube.core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)),
                         ids=[f"{c.kind}-{_slug(c.description)}" for c in CASES])
def test_cel_rule(kube: Kube, crds: dict[str, Crd], table_namespace: str, index: int, case: Any) -> None:
    crd = crds[case.kind]
    namespace, name = table_namespace, f"case-{index}"
    body = _manifest(case.kind, crd, case.object, name)
    if case.old is not None:  # outside pytest.raises: the old object itself must be valid
        old = _create(kube, crd, namespace, _manifest(case.kind, crd, case.old, name))
        body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]

    def submit() -> dict[str, Any]:
        if case.old is None:
            return _create(kube, crd, namespace, body)
        replaced: dict[str, Any] = kube.custom.replace_namespaced_custom_object(
            crd.group, crd.version, namespace, crd.plural, name, body)
        return replaced

    if case.should_be_accepted:
        assert submit()["metadata"]["uid"]
        return
    with pytest.raises(ApiException) as caught:
        submit()
    assert caught.value.status == 422, f"{case.description}: {caught.value.body}"


def test_modelversion_spec_is_immutable_but_status_is_not(
        kube: Kube, crds: dict[str, Crd], namespace: str) -> None:
    good = next((c.object for c in CASES if c.kind == "ModelVersion" and c.should_be_accepted), None)
    if good is None:
        pytest.fail("tests/cel_cases.py has no accepted ModelVersion case")
    crd = crds["ModelVersion"]
    created = _create(kube, crd, namespace, _manifest("ModelVersion", crd, good, "frozen"))

    changed = copy.deepcopy(created)
    changed["spec"]["version"] = created["spec"]["version"] + 1
    with pytest.raises(ApiException) as caught:
        kube.custom.replace_namespaced_custom_object(
            crd.group, crd.version, namespace, crd.plural, "frozen", changed)
    assert caught.value.status == 422
    assert "immutable" in caught.value.body

    # The operator still records its verdict: the status subresource is not frozen.
    kube.custom.patch_namespaced_custom_object_status(
        crd.group, crd.version, namespace, crd.plural, "frozen", {"status": {"observedGeneration": 1}})
    current = kube.custom.get_namespaced_custom_object(
        crd.group, crd.version, namespace, crd.plural, "frozen")
    assert current["status"]["observedGeneration"] == 1
    assert current["spec"] == created["spec"]
