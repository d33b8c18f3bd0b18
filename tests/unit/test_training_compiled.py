"""The compiled form's verdict from the verification Job, and when a Deployment may serve it."""

from __future__ import annotations

from typing import Any

from loopwright.core.training import compiled

SPEC = {"compiled": {"uri": "s3://b/m.lwc", "sha256": "c" * 64, "holdoutUri": "s3://b/h.lwr",
                     "holdoutSha256": "d" * 64}}


def test_a_passed_check_carries_the_agreement_and_serves() -> None:
    check = compiled.check({"verified": True, "compiled": {
        "passed": True, "rows": 500, "agreeing": 500, "message": "500/500 rows agree: identical"}})
    assert check is not None
    assert (check.name, check.metric, check.value, check.threshold, check.passed) == (
        "compiled", "agreement", 1.0, 1.0, True)
    verdict = compiled.verdict(check)
    assert (verdict.type, verdict.status, verdict.reason) == ("CompiledVerified", True, "Identical")


def test_a_failed_check_blocks_the_compiled_form_with_its_reason() -> None:
    check = compiled.check({"compiled": {"passed": False, "rows": 500, "agreeing": 499,
                                         "message": "499/500 rows agree: DIFFERENT (row 7: ...)"}})
    assert check is not None
    assert check.passed is False
    assert check.value == 499 / 500
    verdict = compiled.verdict(check)
    assert verdict.status is False
    assert verdict.reason == "CompiledRejected"
    assert "DIFFERENT (row 7" in verdict.message
    damaged = {"passed": False, "error": "DigestMismatch", "message": "sha256 is ..."}
    corrupt = compiled.check({"compiled": damaged})
    assert corrupt is not None
    assert corrupt.value is None
    assert corrupt.passed is False


def test_no_compiled_form_no_check() -> None:
    assert compiled.check({"verified": True}) is None


def _mv(status: str | None, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    conditions = [] if status is None else [{"type": "CompiledVerified", "status": status}]
    return {"spec": spec, "status": {"conditions": [{"type": "Ready", "status": "True"}, *conditions]}}


def test_only_a_proven_compiled_artifact_serves() -> None:
    assert compiled.servable(_mv("True")) == ("s3://b/m.lwc", "c" * 64)
    assert compiled.servable(_mv("False")) is None
    assert compiled.servable(_mv("Unknown")) is None
    assert compiled.servable(_mv(None)) is None
    assert compiled.servable(_mv("True", spec={})) is None
