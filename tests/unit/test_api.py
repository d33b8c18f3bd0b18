"""The API models: defaults, wire form and the rules that mirror the CRD's CEL rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.api.common import Condition, ResourceStatus, parse_duration
from loopwright.api.dataset import DatasetSpec
from loopwright.api.deployment import DeploymentSpec
from loopwright.api.driftpolicy import DriftMethod, DriftPolicySpec, default_threshold
from loopwright.api.kinds import ALL_KINDS, DEPLOYMENT, kind_of
from loopwright.api.modelversion import ModelVersionSpec, encode_params, model_version_name
from loopwright.api.pipeline import TrainingPipelineSpec

SHA = "a" * 64


def _dataset() -> dict[str, Any]:
    return {
        "source": {"uri": "s3://data/churn/train.csv"},
        "schema": {
            "label": {"name": "churned", "task": "classification"},
            "columns": [
                {"name": "tenure", "type": "numeric", "min": 0},
                {"name": "plan", "type": "categorical", "allowedValues": ["a", "b"]},
            ],
        },
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1m1s", timedelta(seconds=61)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "1d", "m5", "1.5h", " 5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_dataset_defaults_and_wire_form() -> None:
    spec = DatasetSpec.model_validate(_dataset())
    wire = spec.to_wire()
    assert wire["source"]["format"] == "csv"
    assert wire["schema"]["label"]["name"] == "churned"
    assert wire["validation"] == {"minRows": 1, "maxMissingFraction": 0.0, "maxInvalidFraction": 0.0}
    assert wire["refreshInterval"] == "5m"
    assert DatasetSpec.model_validate(wire) == spec


def test_dataset_rejects_unknown_field_and_bad_uri() -> None:
    with pytest.raises(ValidationError, match="extra"):
        DatasetSpec.model_validate({**_dataset(), "refresh": "5m"})
    with pytest.raises(ValidationError, match="uri"):
        DatasetSpec.model_validate({**_dataset(), "source": {"uri": "https://example.com/x.csv"}})


def test_pipeline_defaults() -> None:
    spec = TrainingPipelineSpec.model_validate(
        {
            "datasetRef": {"name": "churn"},
            "model": {
                "name": "churn",
                "estimator": "LogisticRegression",
                "params": {"C": 0.5, "penalty": None},
            },
        }
    )
    assert spec.split.test_fraction == 0.2
    assert spec.validation.champion.when_no_champion == "Pass"
    assert spec.triggers.on_new_data is True
    assert spec.job.backoff_limit == 0
    assert spec.to_wire()["model"]["params"] == {"C": 0.5, "penalty": None}  # None is a real value here


@pytest.mark.parametrize(("version", "expected"), [("latest", "latest"), (3, 3), ("12", 12)])
def test_deployment_version_selector(version: object, expected: object) -> None:
    assert DeploymentSpec.model_validate({"model": "churn", "version": version}).version == expected


@pytest.mark.parametrize("version", [0, -1, "0", "07", "newest", "", "1.5"])
def test_deployment_version_selector_rejects(version: object) -> None:
    with pytest.raises(ValidationError, match="latest"):
        DeploymentSpec.model_validate({"model": "churn", "version": version})


def test_deployment_default_rollout_is_valid() -> None:
    spec = DeploymentSpec.model_validate({"model": "churn"})
    assert [s.weight for s in spec.rollout.steps] == [10, 50]
    assert spec.traffic.mode == "replicas"


def test_model_version_name_and_primary_metric() -> None:
    assert model_version_name(model="churn", version=7) == "churn-v7"
    base = {
        "model": "churn",
        "version": 7,
        "artifact": {"uri": "s3://models/churn/model.skops", "sha256": SHA},
        "metrics": {"accuracy": 0.9},
    }
    assert ModelVersionSpec.model_validate({**base, "primaryMetric": {"name": "accuracy", "value": 0.9}})
    with pytest.raises(ValidationError, match="primaryMetric"):
        ModelVersionSpec.model_validate({**base, "primaryMetric": {"name": "f1", "value": 0.9}})


def test_drift_thresholds_by_method() -> None:
    assert default_threshold(DriftMethod.PSI) == 0.2
    assert default_threshold("chiSquared") == 0.05
    spec = DriftPolicySpec.model_validate({"deploymentRef": {"name": "churn"}})
    assert spec.features.method == "psi"
    assert spec.consecutive == 2


def test_status_conditions_unique_by_type() -> None:
    cond = {
        "type": "Ready",
        "status": "False",
        "reason": "NotImplemented",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    status = ResourceStatus.model_validate({"conditions": [cond]})
    assert isinstance(status.condition("Ready"), Condition)
    assert status.condition("Validated") is None
    assert status.to_wire()["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    with pytest.raises(ValidationError, match="one condition per type"):
        ResourceStatus.model_validate({"conditions": [cond, cond]})


def test_kind_registry() -> None:
    assert {k.kind for k in ALL_KINDS} == {
        "Dataset",
        "TrainingPipeline",
        "ModelVersion",
        "Deployment",
        "DriftPolicy",
        "AnalysisTemplate",
    }
    assert DEPLOYMENT.short_names == ("mldeploy", "mld")
    assert kind_of({"apiVersion": "loopwright.dev/v1alpha1", "kind": "Deployment"}) is DEPLOYMENT
    with pytest.raises(ValueError, match="not a loopwright"):
        kind_of({"apiVersion": "apps/v1", "kind": "Deployment"})


def test_encode_params_keeps_types_readable() -> None:
    assert encode_params({"C": 0.5, "penalty": None, "solver": "lbfgs"}) == {
        "C": "0.5",
        "penalty": "null",
        "solver": '"lbfgs"',
    }
