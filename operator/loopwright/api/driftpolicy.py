"""DriftPolicy: watches a Deployment's live traffic and closes the loop by retraining."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from loopwright.api._base import ApiModel
from loopwright.api.common import (
    Duration,
    ObjectReference,
    ResourceStatus,
    SecretKeyReference,
    list_map,
    parse_duration,
    rules,
    section,
)
from loopwright.api.pipeline import RunTrigger
from loopwright.api.urls import FetchURL

MAX_CHECK_RECORDS = 10
MAX_DRIFTED_NAMES = 32


class DriftMethod(StrEnum):
    PSI = "psi"
    JENSEN_SHANNON = "jensenShannon"
    CHI_SQUARED = "chiSquared"


DEFAULT_THRESHOLDS: dict[DriftMethod, float] = {
    DriftMethod.PSI: 0.2,
    DriftMethod.JENSEN_SHANNON: 0.1,
    DriftMethod.CHI_SQUARED: 0.05,
}
"""Threshold per method when none is given. psi and jensenShannon drift when the statistic
exceeds it; chiSquared drifts when the p-value falls below it."""


def default_threshold(method: DriftMethod | str) -> float:
    """The conventional threshold of a method (see DEFAULT_THRESHOLDS)."""
    return DEFAULT_THRESHOLDS[DriftMethod(method)]


class FeatureOverride(ApiModel):
    """A different method or threshold for one feature, or leaving it out."""

    feature: str = Field(min_length=1, max_length=253, description="Feature (column) name.")
    method: DriftMethod | None = Field(default=None, description="Method for this feature.")
    threshold: float | None = Field(default=None, gt=0.0, description="Threshold for this feature.")
    ignore: bool = Field(default=False, description="Leave this feature out of the drift share.")


class FeatureDrift(ApiModel):
    """How drift of the input features is measured."""

    method: DriftMethod = Field(
        default=DriftMethod.PSI,
        description="psi (population stability index), jensenShannon (distance, base 2) or chiSquared "
                    "(p-value of the test) on the reference bins frozen at training time.")
    threshold: float | None = Field(
        default=None, gt=0.0,
        description="A feature drifts when its statistic exceeds this (psi, jensenShannon) or its p-value "
                    "falls below it (chiSquared). Default: 0.2 psi, 0.1 jensenShannon, 0.05 chiSquared.")
    overrides: list[FeatureOverride] = Field(default_factory=list, max_length=512,
                                             description="Per-feature settings.",
                                             json_schema_extra=list_map("feature"))

    @model_validator(mode="after")
    def _one_override_per_feature(self) -> FeatureDrift:
        features = [o.feature for o in self.overrides]
        if len(set(features)) != len(features):
            raise ValueError("features.overrides must name each feature at most once")
        return self


class PredictionDrift(ApiModel):
    """Drift of the model's output distribution against the training hold-out."""

    enabled: bool = Field(default=True, description="Whether to measure it.")
    method: DriftMethod = Field(default=DriftMethod.PSI, description="Statistic used.")
    threshold: float | None = Field(default=None, gt=0.0,
                                    description="Same meaning and defaults as features.threshold.")


class PerformanceMetric(StrEnum):
    ACCURACY = "accuracy"
    MAE = "mae"
    RMSE = "rmse"


class Performance(ApiModel):
    """Live quality from labels sent back to the predictor (feedback endpoint)."""

    metric: PerformanceMetric = Field(description="accuracy (classification), mae or rmse (regression).")
    max_drop: float = Field(ge=0.0, description="Largest allowed worsening against the hold-out value "
                                                "recorded on the ModelVersion, in units of the metric.")
    min_labels: int = Field(default=100, ge=1, description="Labels needed in the window; fewer is "
                                                           "InsufficientData, never a pass.")


class Retrain(ApiModel):
    """Start a training run when drift or degradation persists."""

    pipeline_ref: ObjectReference = Field(description="TrainingPipeline to run.")
    cooldown: Duration = Field(default="6h", description="Least time between the end of one retrain "
                                                         "caused by this policy (its version promoted, "
                                                         "rejected or rolled back, or its run ended "
                                                         "without one) and the next request.")


class WebhookFormat(StrEnum):
    JSON = "json"
    CLOUD_EVENTS = "cloudEvents"


class Webhook(ApiModel):
    """POST a JSON summary of each detection to a URL (retried with backoff on 5xx, 429 and no answer)."""

    url: FetchURL = Field(description="Endpoint to POST to (never a link-local or metadata address).")
    secret_ref: SecretKeyReference | None = Field(
        default=None, description="Secret key whose value is sent as a Bearer token.")
    format: WebhookFormat = Field(
        default=WebhookFormat.JSON,
        description="json: the summary as the body. cloudEvents: a CloudEvents 1.0 event in structured "
                    "mode (application/cloudevents+json) with the summary as its data.")


class Actions(ApiModel):
    """What happens when drift is confirmed. A Kubernetes Event is always posted."""

    retrain: Retrain | None = Field(default=None, description="Retrain through a TrainingPipeline.")
    webhook: Webhook | None = Field(default=None, description="Notify an HTTP endpoint.")


class DriftPolicySpec(ApiModel):
    """What to watch, how to judge drift, and what to do about it."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("duration(self.window) >= duration(self.interval)", "window must not be shorter than interval"),
    ))

    deployment_ref: ObjectReference = Field(description="The loopwright Deployment (mldeploy) to watch.")
    interval: Duration = Field(default="5m", description="Time between two checks.")
    window: Duration = Field(default="1h", description="Traffic considered by each check.")
    min_samples: int = Field(default=500, ge=1, description="Predictions needed in the window; fewer is "
                                                            "InsufficientData, never a pass.")
    features: FeatureDrift = section(FeatureDrift, description="Drift of the input features.")
    drift_share: float = Field(default=0.5, gt=0.0, le=1.0,
                               description="Fraction of (non-ignored) features that must drift for the "
                                           "data to count as drifted.")
    prediction_drift: PredictionDrift = section(PredictionDrift, description="Drift of the predictions.")
    performance: Performance | None = Field(default=None, description="Live quality from feedback labels.")
    consecutive: int = Field(default=2, ge=1, le=100,
                             description="Checks in a row that must detect drift before acting.")
    actions: Actions = section(Actions, description="What to do when drift is confirmed.")

    @model_validator(mode="after")
    def _window(self) -> DriftPolicySpec:
        if parse_duration(self.window) < parse_duration(self.interval):
            raise ValueError("window must not be shorter than interval")
        return self


class FeatureResult(ApiModel):
    """The drift statistic of one feature at the last check."""

    name: str = Field(max_length=253, description="Feature name.")
    method: DriftMethod = Field(description="Statistic used.")
    statistic: float | None = Field(default=None, description="Observed value; absent without data.")
    threshold: float = Field(description="Threshold applied.")
    drifted: bool = Field(description="Verdict.")


class StatisticResult(ApiModel):
    """A single statistic with its threshold and verdict."""

    method: DriftMethod = Field(description="Statistic used.")
    statistic: float | None = Field(default=None, description="Observed value; absent without data.")
    threshold: float = Field(description="Threshold applied.")
    drifted: bool = Field(description="Verdict.")


class PerformanceResult(ApiModel):
    """Live quality at the last check."""

    metric: PerformanceMetric = Field(description="Metric.")
    value: float | None = Field(default=None, description="Live value; absent without enough labels.")
    reference: float | None = Field(default=None, description="Hold-out value from the ModelVersion.")
    labels: int = Field(default=0, ge=0, description="Labels in the window.")
    degraded: bool = Field(default=False, description="Verdict.")
    consecutive: int = Field(default=0, ge=0, description="Checks in a row that found it degraded.")


class CheckRecord(ApiModel):
    """One recent check, in brief (the per-feature numbers are in its report)."""

    time: datetime = Field(description="When the check ran.")
    model_version: str = Field(max_length=253, description="ModelVersion whose profile was the reference.")
    samples: int = Field(default=0, ge=0, description="Predictions in the window.")
    drifted: bool | None = Field(default=None, description="Verdict; absent when the window had too few "
                                                            "samples for one.")
    drift_share: float | None = Field(default=None, ge=0.0, le=1.0,
                                      description="Fraction of features that drifted.")
    drifted_features: list[str] = Field(default_factory=list, max_length=MAX_DRIFTED_NAMES,
                                        description="Features that drifted (the first 32).")
    prediction_drifted: bool | None = Field(default=None, description="Whether the predictions drifted.")
    report_uri: str | None = Field(default=None, max_length=1024,
                                   description="HTML report of this check (a JSON twin sits next to it).")


class RetrainPhase(StrEnum):
    """Where the retrain this policy requested stands: one cause, one retrain."""

    AWAITING_RUN = "AwaitingRun"
    AWAITING_GATE = "AwaitingGate"
    AWAITING_ROLLOUT = "AwaitingRollout"
    SETTLED = "Settled"


class RetrainOutcome(StrEnum):
    """How a requested retrain settled."""

    PROMOTED = "Promoted"
    REJECTED = "Rejected"
    ROLLED_BACK = "RolledBack"
    RUN_FAILED = "RunFailed"
    NO_NEW_DATA = "NoNewData"
    SUPERSEDED = "Superseded"
    NOT_ROLLED_OUT = "NotRolledOut"
    LOST = "Lost"


class RetrainStatus(ApiModel):
    """The retrain this policy requested and how far it got; no other is requested until it settles."""

    token: str = Field(max_length=253, description="Train-request token set on the pipeline.")
    pipeline: str = Field(max_length=253, description="TrainingPipeline asked to run.")
    trigger: RunTrigger = Field(description="Drift or Performance.")
    requested_time: datetime = Field(description="When the retrain was requested.")
    phase: RetrainPhase = Field(description="AwaitingRun (the run has not ended), AwaitingGate (its version "
                                            "is being validated), AwaitingRollout (the Deployment has not "
                                            "promoted or rolled it back yet), or Settled.")
    run: str | None = Field(default=None, max_length=63, description="The run that answered the request.")
    dataset_version: str | None = Field(default=None, max_length=71,
                                        description="Dataset version the run trained on.")
    model_version: str | None = Field(default=None, max_length=253,
                                      description="ModelVersion the run registered.")
    version: int | None = Field(default=None, ge=1, description="Its version number.")
    outcome: RetrainOutcome | None = Field(
        default=None, description="Once settled: Promoted, Rejected (by the gate), RolledBack, RunFailed, "
                                  "NoNewData, Superseded (a newer version took its place), NotRolledOut "
                                  "(the Deployment pins another version) or Lost (the run is no longer "
                                  "in the pipeline's history).")
    message: str | None = Field(default=None, max_length=1024, description="What it waits for, or how "
                                                                           "it settled.")
    settled_time: datetime | None = Field(default=None, description="When it settled; the cooldown counts "
                                                                    "from here.")


class DriftPolicyStatus(ResourceStatus):
    """The last check, with the raw values behind every verdict."""

    last_check_time: datetime | None = Field(default=None, description="When the last check ran.")
    model_version: str | None = Field(default=None, max_length=253,
                                      description="ModelVersion whose training profile was the reference.")
    samples: int | None = Field(default=None, ge=0, description="Predictions in the window.")
    features: list[FeatureResult] = Field(default_factory=list, max_length=512,
                                          description="Per-feature statistic, threshold and verdict.",
                                          json_schema_extra=list_map("name"))
    prediction: StatisticResult | None = Field(default=None, description="Prediction drift.")
    drift_share: float | None = Field(default=None, ge=0.0, le=1.0,
                                      description="Fraction of features that drifted.")
    drifted: bool | None = Field(default=None, description="Whether the last check detected drift.")
    consecutive: int = Field(default=0, ge=0, description="Checks in a row that detected drift.")
    performance: PerformanceResult | None = Field(default=None, description="Live quality.")
    last_retrain_time: datetime | None = Field(default=None, description="When this policy last retrained.")
    last_retrain_run: str | None = Field(default=None, max_length=253,
                                         description="Train-request token of the last retrain (the value "
                                                     "set in the pipeline's loopwright.dev/train-request).")
    last_retrain_trigger: RunTrigger | None = Field(default=None,
                                                    description="Drift or Performance: why it retrained.")
    retrain: RetrainStatus | None = Field(
        default=None, description="The last retrain requested and where it stands (condition Retraining).")
    last_retrain_report_uri: str | None = Field(
        default=None, max_length=1024, description="Report of the check that requested the last retrain.")
    report_uri: str | None = Field(
        default=None, max_length=1024,
        description="Self-contained HTML report of the last check with a verdict (reference against current "
                    "histogram per feature, statistics, thresholds, prediction drift); its JSON twin has the "
                    "same name ending in .json. `kubectl loopwright report dp/<name>` opens it.")
    report_time: datetime | None = Field(default=None, description="When the check of reportUri ran.")
    checks: list[CheckRecord] = Field(default_factory=list, max_length=MAX_CHECK_RECORDS,
                                      description="The last checks in brief, newest first.")
