"""TrainingPipeline: how to turn a Dataset into a model, and when."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, model_validator

from loopwright.api import names
from loopwright.api._base import ApiModel
from loopwright.api.common import (
    LABEL_NAME_PATTERN,
    LIST_SET,
    Duration,
    ObjectReference,
    ParamValue,
    ResourceRequirements,
    ResourceStatus,
    bounds_rules,
    check_bounds,
    rules,
    section,
)
from loopwright.api.modelversion import IMAGE_PATTERN, TypeName
from loopwright.api.podtemplate import PodTemplate
from loopwright.api.search import Search, SearchResult

TRAIN_REQUEST_ANNOTATION = names.TRAIN_REQUEST_ANNOTATION
"""Set (or change) this annotation on a TrainingPipeline to start one run on demand."""

FACTORY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
"""``module:function``, as in an entry point."""
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4}\S+)$"
TIME_ZONE_PATTERN = r"^(UTC|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2})$"
"""The shape of an IANA time zone name; the tz database itself is checked by the operator."""


class MetricName(StrEnum):
    """Hold-out metrics the trainer can compute."""

    ACCURACY = "accuracy"
    BALANCED_ACCURACY = "balanced_accuracy"
    F1 = "f1"
    F1_MACRO = "f1_macro"
    PRECISION = "precision"
    RECALL = "recall"
    ROC_AUC = "roc_auc"
    LOG_LOSS = "log_loss"
    R2 = "r2"
    MAE = "mae"
    RMSE = "rmse"


LOWER_IS_BETTER: frozenset[str] = frozenset({MetricName.LOG_LOSS, MetricName.MAE, MetricName.RMSE})
"""Metrics where a smaller value is a better model; every other metric is higher-is-better."""


class ModelTemplate(ApiModel):
    """What to train: an allow-listed estimator, or the team's own factory in its own image."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("has(self.estimator) != has(self.factory)", "set exactly one of model.estimator and model.factory"),
        ("!has(self.factory) || has(self.image)",
         "a factory runs in the image that holds its code: set model.image"),
        ("!has(self.trustedTypes) || size(self.trustedTypes) == 0 || has(self.factory)",
         "trustedTypes are for a factory's own types (the estimators' are built in)"),
    ))

    name: str = Field(
        min_length=1, max_length=40, pattern=LABEL_NAME_PATTERN,
        description="Registry name of the model; ModelVersions are named <name>-v<version>.")
    estimator: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9]*$",
        description="An allow-listed scikit-learn estimator class, e.g. RandomForestClassifier, "
                    "LogisticRegression, GradientBoostingRegressor. Preprocessing (one-hot for "
                    "categorical, scaling for numeric columns) is derived from the Dataset schema.")
    factory: str | None = Field(
        default=None, max_length=256, pattern=FACTORY_PATTERN,
        description="module:function in model.image returning an unfitted scikit-learn estimator or "
                    "Pipeline that takes a DataFrame of the Dataset's feature columns (bring your own "
                    "feature engineering; no preprocessing is added).")
    image: str | None = Field(
        default=None, max_length=512, pattern=IMAGE_PATTERN,
        description="Image built FROM the Loopwright ml image holding the factory's code: it trains, "
                    "verifies and serves this model's versions.")
    trusted_types: list[TypeName] = Field(
        default_factory=list, max_length=32,
        description="Types of the factory's model beyond Loopwright's built-in list (e.g. "
                    "mypkg.features.RatioFeatures): nothing else ever loads, and a model needing more "
                    "is refused by the trainer and the verification Job.",
        json_schema_extra=LIST_SET)
    params: dict[str, ParamValue] = Field(
        default_factory=dict, max_length=64,
        description="Constructor parameters of the estimator (scalars only), checked against the "
                    "estimator's allow-list before a run starts; for a factory, set_params() "
                    "arguments (step__param).")

    @model_validator(mode="after")
    def _one_model(self) -> ModelTemplate:
        if (self.estimator is None) == (self.factory is None):
            raise ValueError("set exactly one of model.estimator and model.factory")
        if self.factory is not None and self.image is None:
            raise ValueError("a factory runs in the image that holds its code: set model.image")
        if self.trusted_types and self.factory is None:
            raise ValueError("trustedTypes are for a factory's own types (the estimators' are built in)")
        return self


class Split(ApiModel):
    """How the hold-out set is drawn."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("self.testFraction > 0.0 && self.testFraction < 1.0",
         "split.testFraction must be strictly between 0 and 1"),
    ))

    test_fraction: float = Field(default=0.2, description="Fraction of rows held out for evaluation, "
                                                          "strictly between 0 and 1.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Random seed of the split and the "
                                                                 "estimator, for reproducible runs.")
    stratify: bool = Field(default=True, description="Keep class proportions in the hold-out set "
                                                     "(classification only).")

    @model_validator(mode="after")
    def _check_fraction(self) -> Split:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError("split.testFraction must be strictly between 0 and 1")
        return self


class Threshold(ApiModel):
    """An absolute gate on one hold-out metric."""

    model_config = ConfigDict(json_schema_extra=bounds_rules("a threshold"))

    metric: MetricName = Field(description="Metric the gate applies to.")
    min: float | None = Field(default=None, description="Smallest acceptable value.")
    max: float | None = Field(default=None, description="Largest acceptable value.")

    @model_validator(mode="after")
    def _check_bounds(self) -> Threshold:
        check_bounds(self.min, self.max, what="a threshold")
        return self


class NoChampion(StrEnum):
    """What the champion check does when no model is in production."""

    PASS = "Pass"  # noqa: S105 (a verdict, not a password)
    REJECT = "Reject"


class ChampionCheck(ApiModel):
    """Compare the candidate with the model currently in production."""

    enabled: bool = Field(default=True, description="Whether to compare with the champion at all.")
    alias: str = Field(default="production", max_length=63, pattern=LABEL_NAME_PATTERN,
                       description="Alias that marks the champion among the model's versions.")
    metric: MetricName | None = Field(
        default=None, description="Metric to compare; defaults to the pipeline's primary metric.")
    margin: float = Field(
        default=0.0, ge=0.0,
        description="How much worse than the champion the candidate may be, in units of the metric "
                    "(0 = at least as good).")
    when_no_champion: NoChampion = Field(
        default=NoChampion.PASS,
        description="Pass: the first model (no champion yet) is accepted on its thresholds alone. "
                    "Reject: a model is only accepted by comparison, so a champion must exist.")


class PipelineValidation(ApiModel):
    """What a trained model must achieve before it becomes a Validated ModelVersion."""

    thresholds: list[Threshold] = Field(default_factory=list, max_length=16,
                                        description="Absolute gates on hold-out metrics.",
                                        json_schema_extra=rules(
                                            ("self.all(t, self.exists_one(u, u.metric == t.metric))",
                                             "at most one threshold per metric")))
    champion: ChampionCheck = section(ChampionCheck, description="Comparison with the production model.")

    @model_validator(mode="after")
    def _one_threshold_per_metric(self) -> PipelineValidation:
        metrics = [t.metric for t in self.thresholds]
        if len(set(metrics)) != len(metrics):
            raise ValueError("at most one threshold per metric")
        return self


class Triggers(ApiModel):
    """When runs start, besides the on-demand annotation."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("has(self.schedule) || !(has(self.timeZone) || has(self.startingDeadline))",
         "timeZone and startingDeadline apply to a schedule: set triggers.schedule"),
    ))

    schedule: str | None = Field(default=None, max_length=128, pattern=CRON_PATTERN,
                                 description="Cron expression (5 fields) for scheduled runs, read in "
                                             "timeZone. After the operator was down (or a run was "
                                             "active) across scheduled times, ONE run starts for "
                                             "them, never one per missed time; see startingDeadline.")
    time_zone: str | None = Field(
        default=None, max_length=64, pattern=TIME_ZONE_PATTERN,
        description="IANA time zone the schedule is read in, e.g. Europe/Berlin (like a CronJob's "
                    "timeZone); daylight-saving changes follow the zone. Empty: UTC.")
    starting_deadline: Duration | None = Field(
        default=None,
        description="Like a CronJob's startingDeadlineSeconds: a scheduled time missed by more than "
                    "this (operator down, a run in progress) is skipped instead of run late. Empty: "
                    "a missed time runs once, as soon as possible.")
    on_new_data: bool = Field(default=True,
                              description="Start a run when the Dataset publishes a new validated version.")
    cooldown: Duration = Field(default="10m",
                               description="Least time between two automatically triggered runs.")
    suspend: bool = Field(default=False,
                          description="Start no new runs (running ones finish); on-demand requests wait.")

    @model_validator(mode="after")
    def _known_time_zone(self) -> Triggers:
        if self.schedule is None and (self.time_zone is not None or self.starting_deadline is not None):
            raise ValueError("timeZone and startingDeadline apply to a schedule: set triggers.schedule")
        if self.time_zone is not None:
            try:
                ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"timeZone {self.time_zone!r} is not in the IANA tz database") from exc
        return self


class JobTemplate(ApiModel):
    """Knobs of the training Job."""

    resources: ResourceRequirements | None = Field(default=None, description="Trainer container resources.")
    active_deadline_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600,
                                         description="Kill the run after this many seconds.")
    backoff_limit: int = Field(default=0, ge=0, le=10, description="Retries of a failed trainer pod.")


class TrainingPipelineSpec(ApiModel):
    """How to turn a Dataset into a model, and when."""

    dataset_ref: ObjectReference = Field(description="The Dataset to train on (its validated version).")
    model: ModelTemplate = Field(description="What to train.")
    split: Split = section(Split, description="How the hold-out set is drawn.")
    metrics: list[MetricName] = Field(
        default_factory=list, max_length=11,
        description="Hold-out metrics to compute; the first is the primary metric (shown by kubectl, "
                    "compared with the champion). Empty: accuracy, f1_macro for classification; "
                    "r2, rmse for regression.",
        json_schema_extra=LIST_SET)
    validation: PipelineValidation = section(PipelineValidation,
                                             description="Gates a new model must pass.")
    triggers: Triggers = section(Triggers, description="When runs start.")
    search: Search | None = Field(
        default=None,
        description="Hyperparameter search before training: trials on a validation split of the "
                    "training part, as one Indexed Job; the best parameters are then trained on the whole "
                    "training part and gated on the hold-out as usual.")
    job: JobTemplate = section(JobTemplate, description="Knobs of the training Job (and of each trial pod).")
    pod_template: PodTemplate | None = Field(
        default=None,
        description="Scheduling, identity and resources of the trainer (and trial) pods, over the operator's "
                    "defaults.")
    history_limit: int = Field(default=10, ge=1, le=50,
                               description="Runs kept in status.runs (their Jobs are deleted beyond it).")

    @model_validator(mode="after")
    def _unique_metrics(self) -> TrainingPipelineSpec:
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError("metrics must not repeat")
        return self


class RunTrigger(StrEnum):
    MANUAL = "Manual"
    SCHEDULE = "Schedule"
    NEW_DATA = "NewData"
    DRIFT = "Drift"
    PERFORMANCE = "Performance"


class RunPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    """Ended without a Job: nothing new to learn (reason NoNewData)."""


class Run(ApiModel):
    """One training run: its Job, its inputs and its outcome."""

    id: int = Field(ge=1, description="Run number, increasing per pipeline.")
    name: str = Field(max_length=63, description="Run name, <pipeline>-<id>; also the Job's name.")
    trigger: RunTrigger = Field(description="What started the run.")
    dataset_version: str | None = Field(default=None, max_length=71,
                                        description="Digest of the Dataset version trained on.")
    phase: RunPhase = Field(description="Pending, Running, Succeeded, Failed or Skipped (a Drift or "
                                        "Performance run with the inputs of an existing version: reason "
                                        "NoNewData).")
    model_version: str | None = Field(default=None, max_length=253,
                                      description="ModelVersion registered by this run.")
    start_time: datetime | None = Field(default=None, description="When the Job was created.")
    completion_time: datetime | None = Field(default=None, description="When the run finished.")
    reason: str | None = Field(default=None, max_length=128, description="CamelCase reason for the phase.")
    message: str | None = Field(default=None, max_length=4096, description="Details of the outcome.")
    search: SearchResult | None = Field(default=None, description="The run's hyperparameter search: "
                                                                  "every trial's parameters and score.")
    request: str | None = Field(default=None, max_length=253,
                                description=f"The {TRAIN_REQUEST_ANNOTATION} token this run answered.")
    inputs_digest: str | None = Field(
        default=None, max_length=71,
        description="sha256 over what decides the model: dataset version, estimator, parameters, split and "
                    "seed, schema (preprocessing). Equal digests train identical models.")
    report_uri: str | None = Field(
        default=None, max_length=1024,
        description="Self-contained HTML report of the run (metrics, confusion matrix or residuals, feature "
                    "summary, gate decision, comparison with the champion); JSON twin next to it.")


class TrainingPipelineStatus(ResourceStatus):
    """The runs so far and what happens next."""

    phase: RunPhase | None = Field(default=None, description="Phase of the latest run.")
    last_run: str | None = Field(default=None, max_length=63, description="Name of the latest run.")
    run_count: int = Field(default=0, ge=0, description="Runs started so far; the next run is run_count+1.")
    last_version: int = Field(
        default=0, ge=0,
        description="Highest model version this pipeline registered. The next version is above it and above "
                    "every existing version, so a number is never reused, even after a version is deleted.")
    runs: list[Run] = Field(default_factory=list, max_length=50, description="Recent runs, newest first.",
                            json_schema_extra={"x-kubernetes-list-type": "map",
                                               "x-kubernetes-list-map-keys": ["id"]})
    last_trigger_time: datetime | None = Field(
        default=None, description="When the last run was started; the cooldown counts from here.")
    trained_dataset_version: str | None = Field(
        default=None, max_length=71, description="Dataset digest of the latest run (for onNewData).")
    handled_train_request: str | None = Field(
        default=None, max_length=253,
        description=f"Value of the {TRAIN_REQUEST_ANNOTATION} annotation already acted upon.")
    next_scheduled_time: datetime | None = Field(default=None, description="Next run by schedule.")

