"""Every CRD rule against tests/cel_cases.py, judged twice: by the schema and by the models.

The schema side uses tests/crd_admission.py (kube-apiserver's admission, emulated with
cel-python); tests/e2e/test_crd_cel.py runs the same cases against a real API server.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cel_cases import CASES, CelCase
from crd_admission import admission_errors, default_errors, defaulted, root, schema_nodes
from loopwright.api.kinds import ALL_KINDS

_KINDS = {k.kind: k for k in ALL_KINDS}


def _case_id(case: CelCase) -> str:
    return f"{case.kind}: {case.description}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_crd_judges_case(case: CelCase) -> None:
    errors = admission_errors(_KINDS[case.kind], case.object, case.old)
    if case.should_be_accepted:
        assert errors == []
    else:
        assert errors, "accepted, but should be rejected"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_models_judge_case(case: CelCase) -> None:
    if case.old is not None and not case.should_be_accepted:
        pytest.skip("an update rule: the models see one object, not a transition")
    spec_model = _KINDS[case.kind].spec
    if case.should_be_accepted:
        spec_model.model_validate(case.object["spec"])
    else:
        with pytest.raises(ValidationError):
            spec_model.model_validate(case.object["spec"])


def test_every_rule_is_exercised() -> None:
    """Each CEL rule's message appears in the rejection of at least one case."""
    messages = {
        rule["message"]
        for kind in ALL_KINDS
        for node in schema_nodes(root(kind))
        for rule in node.get("x-kubernetes-validations", ())
    }
    seen = " | ".join(e for c in CASES for e in admission_errors(_KINDS[c.kind], c.object, c.old))
    assert sorted(m for m in messages if m not in seen) == []


def test_every_kind_has_accepted_and_rejected_cases() -> None:
    for kind in ALL_KINDS:
        verdicts = {c.should_be_accepted for c in CASES if c.kind == kind.kind}
        assert verdicts == {True, False}, kind.kind


def test_the_emulator_rejects_what_it_should() -> None:
    """The judge itself: unknown fields, wrong types and missing required fields are errors."""
    kind = _KINDS["Deployment"]
    ok = {
        "apiVersion": "loopwright.dev/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"model": "churn"},
    }
    assert admission_errors(kind, ok) == []
    assert admission_errors(kind, {**ok, "spec": {"model": "churn", "replica": 2}})
    assert admission_errors(kind, {**ok, "spec": {"model": "churn", "replicas": "2"}})
    assert admission_errors(kind, {**ok, "spec": {"replicas": 2}})


def test_defaulting_fills_nested_sections() -> None:
    kind = _KINDS["TrainingPipeline"]
    spec = {"datasetRef": {"name": "d"}, "model": {"name": "m", "estimator": "Ridge"}}
    filled = defaulted(kind, {"spec": spec})["spec"]
    model = kind.spec.model_validate(spec).to_wire()
    assert filled["split"] == model["split"] == {"testFraction": 0.2, "seed": 0, "stratify": True}
    assert filled["triggers"]["cooldown"] == "10m"
    assert filled["validation"]["champion"]["whenNoChampion"] == "Pass"


def test_defaults_pass_their_own_rules_as_written() -> None:
    """kube-apiserver refuses a CRD whose default breaks a rule of its node."""
    for kind in ALL_KINDS:
        for node in schema_nodes(root(kind)):
            if "default" in node:
                assert default_errors(node) == [], f"{kind.kind}: {node.get('description')}"
