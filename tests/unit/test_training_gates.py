"""Validation gates: thresholds, the champion, and what happens without either."""

from __future__ import annotations

from typing import Any

import pytest

from loopwright.api.modelversion import Check
from loopwright.api.pipeline import PipelineValidation
from loopwright.core.training import gates

OK = Check(name="artifact", passed=True, message="verified")


def _evaluate(
    metrics: dict[str, float],
    validation: dict[str, Any] | None,
    *,
    incumbent: gates.Incumbent | None = None,
    artifact: Check = OK,
    primary: str | None = "accuracy",
) -> gates.Verdict:
    return gates.evaluate(
        model="m",
        metrics=metrics,
        primary_metric=primary,
        artifact=artifact,
        validation=PipelineValidation.model_validate(validation) if validation is not None else None,
        incumbent=incumbent,
    )


def test_thresholds_show_value_and_limit() -> None:
    verdict = _evaluate(
        {"accuracy": 0.7, "log_loss": 0.9},
        {"thresholds": [{"metric": "accuracy", "min": 0.8}, {"metric": "log_loss", "max": 1.0}]},
    )
    assert verdict.phase == "Rejected"
    assert verdict.reason == "ChecksFailed"
    checks = {c.name: c for c in verdict.checks}
    assert (checks["min:accuracy"].value, checks["min:accuracy"].threshold) == (0.7, 0.8)
    assert not checks["min:accuracy"].passed
    assert checks["max:log_loss"].passed
    assert "min:accuracy" in verdict.message
    assert "0.7" in verdict.message


def test_a_missing_metric_fails_its_gate() -> None:
    verdict = _evaluate({"accuracy": 0.9}, {"thresholds": [{"metric": "roc_auc", "min": 0.5}]})
    assert verdict.phase == "Rejected"
    assert "not computed" in verdict.checks[1].message


@pytest.mark.parametrize(
    ("mine", "margin", "passed"), [(0.80, 0.0, True), (0.79, 0.0, False), (0.79, 0.02, True)]
)
def test_champion_higher_is_better(mine: float, margin: float, passed: bool) -> None:
    champion = gates.Incumbent(name="m-v1", version=1, metrics={"accuracy": 0.80})
    verdict = _evaluate({"accuracy": mine}, {"champion": {"margin": margin}}, incumbent=champion)
    check = verdict.checks[-1]
    assert check.name == "champion"
    assert check.passed is passed
    assert check.threshold == pytest.approx(0.80 - margin)
    assert check.value == mine
    assert verdict.champion is not None
    assert verdict.champion.value == 0.80
    assert verdict.phase == ("Validated" if passed else "Rejected")


def test_champion_lower_is_better() -> None:
    champion = gates.Incumbent(name="m-v1", version=1, metrics={"rmse": 2.0})
    better = _evaluate({"rmse": 1.5}, {"champion": {"metric": "rmse"}}, incumbent=champion, primary="r2")
    worse = _evaluate({"rmse": 2.5}, {"champion": {"metric": "rmse", "margin": 0.1}}, incumbent=champion)
    assert better.phase == "Validated"
    assert worse.phase == "Rejected"
    assert worse.checks[-1].threshold == pytest.approx(2.1)


def test_no_champion_is_explicit() -> None:
    passing = _evaluate({"accuracy": 0.5}, {})
    assert passing.phase == "Validated"
    assert "whenNoChampion=Pass" in passing.checks[-1].message
    rejecting = _evaluate({"accuracy": 0.5}, {"champion": {"whenNoChampion": "Reject"}})
    assert rejecting.phase == "Rejected"
    assert "whenNoChampion=Reject" in rejecting.message
    disabled = _evaluate({"accuracy": 0.5}, {"champion": {"enabled": False}})
    assert [c.name for c in disabled.checks] == ["artifact"]
    assert disabled.phase == "Validated"


def test_champion_without_the_metric_is_inconclusive() -> None:
    champion = gates.Incumbent(name="m-v1", version=1, metrics={})
    verdict = _evaluate({"accuracy": 0.9}, {}, incumbent=champion)
    assert verdict.phase == "Rejected"
    assert "inconclusive" in verdict.message


def test_without_a_pipeline_only_the_artifact_counts() -> None:
    verdict = _evaluate({}, None)
    assert verdict.phase == "Validated"
    assert "artifact checks alone" in verdict.message
    bad = Check(name="artifact", passed=False, message="DigestMismatch: sha256 is x")
    rejected = _evaluate(
        {"accuracy": 1.0}, {"thresholds": [{"metric": "accuracy", "min": 0.1}]}, artifact=bad
    )
    assert rejected.phase == "Rejected"
    assert rejected.reason == "ArtifactRejected"
    assert [c.name for c in rejected.checks] == ["artifact"]
