"""A drift check and a training run of a churn model, as report pages: the browser test renders them
and `python tests/report_samples/screenshots.py` photographs them for the README."""

from __future__ import annotations

from datetime import UTC, datetime

from loopwright.api.driftpolicy import DriftPolicySpec
from loopwright.core.drift import check
from loopwright.core.drift.window import PREDICTIONS, Counts, Key
from loopwright.core.profile import FeatureProfile, Profile
from loopwright.reports import drift, training

NOW = datetime(2026, 3, 4, 11, 59, tzinfo=UTC)
PROFILE = Profile(
    rows=9600,
    features={
        "tenure_months": FeatureProfile(
            kind="numeric",
            edges=[3, 8, 14, 22, 30, 40, 52, 61, 68],
            counts=[960] * 10,
            mean=32.4,
            std=21.0,
            min=0,
            max=72,
        ),
        "monthly_charges": FeatureProfile(
            kind="numeric",
            edges=[25, 40, 55, 70, 85],
            counts=[1400, 1700, 1600, 1700, 1600, 1600],
            mean=64.8,
            std=30.1,
            min=18,
            max=119,
            missing=48,
        ),
        "plan": FeatureProfile(
            kind="categorical", categories=["basic", "premium", "standard"], counts=[4300, 1500, 3800, 0]
        ),
        "support_calls": FeatureProfile(
            kind="numeric",
            edges=[1, 2, 3, 5],
            counts=[3100, 2900, 1900, 1200, 500],
            mean=1.6,
            std=1.4,
            min=0,
            max=11,
        ),
    },
    prediction=FeatureProfile(kind="categorical", categories=["no", "yes"], counts=[1480, 440, 0]),
    classes=["no", "yes"],
)
CURRENT = {
    "tenure_months": [420, 330, 250, 190, 150, 130, 110, 100, 90, 70],
    "monthly_charges": [250, 300, 280, 310, 300, 300],
    "plan": [980, 210, 540, 110],
    "support_calls": [590, 560, 360, 230, 100],
}


def drift_data() -> dict:
    values: dict[Key, float] = {
        ("bin", f, str(i)): n for f, bins in CURRENT.items() for i, n in enumerate(bins)
    }
    values |= {
        ("prediction", "0"): 1290,
        ("prediction", "1"): 550,
        PREDICTIONS: 1840,
        ("missing", "monthly_charges"): 6,
    }
    counts = Counts(values=values)
    spec = DriftPolicySpec.model_validate(
        {
            "deploymentRef": {"name": "churn"},
            "interval": "1m",
            "window": "10m",
            "minSamples": 500,
            "features": {"overrides": [{"feature": "plan", "method": "chiSquared"}]},
            "actions": {"retrain": {"pipelineRef": {"name": "churn"}}},
        }
    )
    outcome = check.evaluate(
        spec,
        profile=PROFILE,
        counts=counts,
        reference_metrics={},
        previous=check.Previous(consecutive=1),
        now=NOW,
    )
    return drift.build(
        spec=spec,
        outcome=outcome,
        profile=PROFILE,
        counts=counts,
        policy="churn",
        namespace="demo",
        deployment="churn",
        model_version="churn-v3",
        time=NOW,
        retrain={"pipeline": "churn", "token": "churn-1772625540", "trigger": str(outcome.retrain)},
    )


def training_data() -> dict:
    result = {
        "task": "classification",
        "estimator": "RandomForestClassifier",
        "params": {"n_estimators": 200, "max_depth": 8},
        "seed": 42,
        "testFraction": 0.2,
        "stratified": True,
        "primaryMetric": "accuracy",
        "metrics": {"accuracy": 0.8712, "f1_macro": 0.8215, "roc_auc": 0.9104},
        "dataset": {"uri": "s3://loopwright/data/churn/", "digest": "sha256:" + "a1" * 32, "format": "csv"},
        "rows": {"total": 12000, "train": 9600, "test": 2400, "droppedUnlabelled": 0},
        "fitSeconds": 3.41,
    }
    gates = {
        "model": "churn",
        "validation": {"thresholds": [{"metric": "accuracy", "min": 0.75}], "champion": {"margin": 0.01}},
        "champion": {
            "name": "churn-v3",
            "version": 3,
            "metrics": {"accuracy": 0.8623, "f1_macro": 0.8104, "roc_auc": 0.9051},
        },
    }
    return training.build(
        result=result,
        run="churn-4",
        profile=PROFILE,
        time=NOW,
        confusion=(["no", "yes"], [[1702, 143], [166, 389]]),
        residual=None,
        given_gates=gates,
    )


def drift_page() -> str:
    return drift.render(drift_data())


def training_page() -> str:
    return training.render(training_data())
