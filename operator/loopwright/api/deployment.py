"""Deployment (mldeploy, mld): a prediction service for one model, rolled out by canary.

The kind shares its name with apps/v1 Deployment: code always names the group.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from loopwright.api._base import ApiModel
from loopwright.api.analysis import Analysis
from loopwright.api.common import (
    LABEL_NAME_PATTERN,
    NAME_PATTERN,
    Duration,
    ResourceRequirements,
    ResourceStatus,
    SecretKeyReference,
    rules,
    section,
)
from loopwright.api.podtemplate import PodTemplate

LATEST = "latest"
MAX_STEPS = 10

_VERSION_RULE = ("type(self) == int ? self >= 1 : (self == 'latest' || self.matches('^[1-9][0-9]{0,5}$'))",
                 "version must be `latest` or a positive integer such as 3")

VersionSelector = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True, **rules(_VERSION_RULE)}),
]
"""``latest`` (follow the newest Validated version) or a pinned version number."""


class Step(ApiModel):
    """One canary step."""

    weight: int = Field(ge=1, le=100, description="Percentage of traffic sent to the canary at this step.")
    pause: Duration | None = Field(
        default=None,
        description="How long to hold this weight while the analysis runs before the next step; "
                    "omitted: hold until promoted by hand (spec.rollout.promote).")


def _steps_increasing_rule() -> tuple[str, str]:
    indices = ", ".join(str(i) for i in range(MAX_STEPS - 1))
    return (f"[{indices}].all(i, i + 1 >= size(self) || self[i].weight < self[i + 1].weight)",
            "rollout step weights must be strictly increasing")


_DEFAULT_STEPS: list[JsonValue] = [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}]


class VersionRef(ApiModel):
    """Names one version of the model."""

    version: int = Field(ge=1, description="Version number.")


class NewVersionPolicy(StrEnum):
    """What a newer version arriving during a canary does."""

    QUEUE = "Queue"
    SUPERSEDE = "Supersede"


class Rollout(ApiModel):
    """How a new version replaces the stable one."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("!has(self.promote) || !has(self.abort) || self.promote.version != self.abort.version",
         "cannot promote and abort the same version"),
    ))

    steps: list[Step] = Field(
        default_factory=lambda: [Step.model_validate(step) for step in _DEFAULT_STEPS],
        min_length=1, max_length=MAX_STEPS,
        description="Canary steps with increasing weights; after the last step the canary is promoted "
                    "(if autoPromote) to 100%.",
        json_schema_extra={"default": _DEFAULT_STEPS, **rules(_steps_increasing_rule())})
    analysis: Analysis = section(Analysis, description="How each step is judged.")
    auto_promote: bool = Field(default=True, description="Promote after the last step passes; otherwise "
                                                         "hold until spec.rollout.promote names the version.")
    paused: bool = Field(default=False, description="Freeze the rollout at its current step (the analysis "
                                                    "keeps running and can still roll back).")
    on_new_version: NewVersionPolicy = Field(
        default=NewVersionPolicy.QUEUE,
        description="With version latest, a newer Validated version arriving during a canary: Queue (the "
                    "default) lets the canary finish, then rolls out the newest queued version; Supersede "
                    "drops the canary and starts one of the newer version at once.")
    progress_deadline: Duration = Field(
        default="10m",
        description="How long a step may wait for its canary pods to become ready before the version is "
                    "rolled back.")
    promote: VersionRef | None = Field(
        default=None,
        description="Promote this canary version now, skipping remaining steps. Has no effect on other "
                    "versions, so it can stay in Git.")
    abort: VersionRef | None = Field(
        default=None,
        description="Roll back this canary version now and reject it for this Deployment.")

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[Step]) -> list[Step]:
        if any(a.weight >= b.weight for a, b in itertools.pairwise(steps)):
            raise ValueError("rollout step weights must be strictly increasing")
        return steps

    @model_validator(mode="after")
    def _promote_or_abort(self) -> Rollout:
        if self.promote is not None and self.abort is not None and self.promote.version == self.abort.version:
            raise ValueError("cannot promote and abort the same version")
        return self


class TrafficMode(StrEnum):
    REPLICAS = "replicas"
    GATEWAY_API = "gatewayAPI"


class ParentRef(ApiModel):
    """The Gateway the HTTPRoute attaches to."""

    name: str = Field(max_length=253, pattern=NAME_PATTERN, description="Gateway name.")
    namespace: str | None = Field(default=None, max_length=63, pattern=LABEL_NAME_PATTERN,
                                  description="Gateway namespace; defaults to the Deployment's.")
    section_name: str | None = Field(default=None, max_length=253, description="Listener name.")


class Gateway(ApiModel):
    """Gateway API settings."""

    parent_ref: ParentRef = Field(description="The Gateway the HTTPRoute attaches to.")


class Traffic(ApiModel):
    """How traffic is split between stable and canary."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("self.mode != 'gatewayAPI' || has(self.gateway)",
         "traffic.gateway is required when mode is gatewayAPI"),
    ))

    mode: TrafficMode = Field(
        default=TrafficMode.REPLICAS,
        description="replicas (any cluster, kind included): the weight is approximated by the ratio of "
                    "canary to stable pods behind one Service. gatewayAPI: an HTTPRoute with weights.")
    gateway: Gateway | None = Field(default=None, description="Required when mode is gatewayAPI.")

    @model_validator(mode="after")
    def _gateway(self) -> Traffic:
        if self.mode == TrafficMode.GATEWAY_API and self.gateway is None:
            raise ValueError("traffic.gateway is required when mode is gatewayAPI")
        return self


class Capture(ApiModel):
    """Sampling of requests and predictions to S3, for later Dataset versions."""

    fraction: float = Field(default=0.0, ge=0.0, le=1.0, description="Fraction of requests captured (0..1).")


class Feedback(ApiModel):
    """Who may send labels for earlier predictions (``POST /v1/models/<model>/feedback``).

    Labels move the live performance figures, can trigger retraining and join captured data: they
    are accepted only with the bearer token of this Secret. Without one, feedback is refused.
    """

    token_secret_ref: SecretKeyReference | None = Field(
        default=None,
        description="Secret key holding the token a client sends as `Authorization: Bearer <token>`; "
                    "mounted into the predictor pods. Omitted: /feedback answers 403.")


REQUESTS_PER_SECOND_METRIC = "loopwright_predictor_requests_per_second"
"""The Pods metric ``targetRequestsPerSecond`` names: a metrics adapter (prometheus-adapter, say)
must serve it from the predictors' request counter, or the HorizontalPodAutoscaler reports it
missing (condition Autoscaling False)."""


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler (autoscaling/v2) on the stable version's pods."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
         "autoscaling.minReplicas must not exceed maxReplicas"),
    ))

    min_replicas: int = Field(default=1, ge=1, le=100, description="Fewest stable pods.")
    max_replicas: int = Field(ge=1, le=100, description="Most stable pods.")
    target_cpu_utilization_percentage: int = Field(
        default=80, ge=1, le=1000, alias="targetCPUUtilizationPercentage",
        description="Average CPU use of the pods, as a percentage of their CPU request, that the "
                    "autoscaler aims at (needs metrics-server).")
    target_requests_per_second: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description=f"Optional second metric: average requests per second per pod, read as the Pods "
                    f"metric `{REQUESTS_PER_SECOND_METRIC}`, which only a metrics adapter serves "
                    f"(the autoscaler follows whichever metric asks for more pods).")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must not exceed maxReplicas")
        return self


class DeploymentSpec(ApiModel):
    """Which model version to serve and how to roll out a new one."""

    model: str = Field(min_length=1, max_length=40, pattern=LABEL_NAME_PATTERN,
                       description="Registry name of the model to serve.")
    version: VersionSelector = Field(
        default=LATEST,
        description="`latest` follows the newest Validated version; a number pins that version.")
    replicas: int = Field(default=1, ge=0, le=100,
                          description="Predictor pods of the stable version (`kubectl scale mld` sets it); "
                                      "ignored while spec.autoscaling is set.")
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Let a HorizontalPodAutoscaler size the stable version between minReplicas and "
                    "maxReplicas (the canary follows its weight of that size); omitted: spec.replicas.")
    resources: ResourceRequirements | None = Field(default=None, description="Predictor container resources.")
    pod_template: PodTemplate | None = Field(
        default=None,
        description="Scheduling, identity and resources of the predictor pods, over the operator's defaults.")
    rollout: Rollout = section(Rollout, description="Canary rollout.")
    traffic: Traffic = section(Traffic, description="Traffic splitting.")
    capture: Capture = section(Capture, description="Request capture to S3.")
    feedback: Feedback = section(Feedback, description="Who may send labels for earlier predictions.")

    @field_validator("version")
    @classmethod
    def _version(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value >= 1:
            return value
        if isinstance(value, str) and (value == LATEST or (value.isdigit() and not value.startswith("0")
                                                           and len(value) <= 6)):
            return value if value == LATEST else int(value)
        raise ValueError("version must be `latest` or a positive integer such as 3")


class DeploymentPhase(StrEnum):
    PENDING = "Pending"
    STABLE = "Stable"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class StableStatus(ApiModel):
    """The version serving most traffic."""

    version: int = Field(ge=1, description="Model version.")
    model_version: str = Field(max_length=253, description="ModelVersion name.")
    replicas: int = Field(default=0, ge=0, description="Desired pods.")
    ready_replicas: int = Field(default=0, ge=0, description="Ready pods.")
    desired_weight: int = Field(default=100, ge=0, le=100, description="Traffic percentage aimed at.")
    weight: int = Field(default=100, ge=0, le=100, description="Actual traffic percentage.")


class CanaryStatus(ApiModel):
    """The version being rolled out."""

    version: int = Field(ge=1, description="Model version.")
    model_version: str = Field(max_length=253, description="ModelVersion name.")
    replicas: int = Field(default=0, ge=0, description="Desired pods.")
    ready_replicas: int = Field(default=0, ge=0, description="Ready pods.")
    step: int = Field(default=0, ge=0, description="Index of the current step in spec.rollout.steps.")
    desired_weight: int = Field(default=0, ge=0, le=100, description="Weight of the current step.")
    weight: int = Field(default=0, ge=0, le=100, description="Traffic percentage actually reached.")
    step_start_time: datetime | None = Field(default=None, description="When the current step began.")
    weight_reached_time: datetime | None = Field(
        default=None, description="When the step's canary pods were all ready; its pause counts from here.")


class QueuedStatus(ApiModel):
    """The newest version waiting for the canary in progress to finish."""

    version: int = Field(ge=1, description="Model version.")
    model_version: str = Field(max_length=253, description="ModelVersion name.")
    since: datetime | None = Field(default=None, description="When it was first queued.")


class Verdict(StrEnum):
    PASS = "Pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class AnalysisResult(ApiModel):
    """One metric of one analysis check, with the raw numbers."""

    metric: str = Field(max_length=64, description="Metric name, e.g. errorRate.")
    value: float | None = Field(default=None, description="Observed canary value; absent without data.")
    stable_value: float | None = Field(default=None, description="Observed stable value, if compared.")
    threshold: float | None = Field(default=None, description="Bound applied.")
    verdict: Verdict = Field(description="Pass, Fail or Inconclusive.")
    message: str = Field(default="", max_length=1024, description="Human-readable details.")


class Counters(ApiModel):
    """Counter values of one predictor pod, in the units of its /metrics."""

    requests: float = Field(default=0.0, description="Requests to the prediction endpoints (a base goes "
                                                     "below zero when its pod restarted mid-window).")
    errors: float = Field(default=0.0, description="Of which answered with a 5xx code.")
    latency: list[float] = Field(default_factory=list, max_length=64,
                                 description="Cumulative latency histogram counts, one per bound of "
                                             "analysis.latencyBounds, then the +Inf bucket.")
    predictions: list[float] = Field(default_factory=list, max_length=256,
                                     description="Predictions per bin of the version's reference profile.")


class PodWindow(ApiModel):
    """What one pod contributed to the current analysis window (kept when the pod goes away)."""

    uid: str = Field(max_length=64, description="Pod UID: a replaced pod is a new window member.")
    name: str = Field(max_length=253, description="Pod name, for humans.")
    version: int = Field(ge=1, description="Model version the pod serves.")
    base: Counters = Field(default_factory=Counters, description="Values when the window started (or when "
                                                                 "the pod restarted).")
    last: Counters = Field(default_factory=Counters, description="Values at the last scrape.")


class AnalysisStatus(ApiModel):
    """Latest analysis of the canary, and the counter baselines of the current step's window.

    The baselines live here, not in memory, so an operator restart neither resets the
    window nor double-counts it.
    """

    last_time: datetime | None = Field(default=None, description="When the last check ran.")
    failures: int = Field(default=0, ge=0, description="Failed checks at this rollout so far.")
    checks: int = Field(default=0, ge=0, description="Checks run at the current step.")
    verdict: Verdict | None = Field(default=None, description="Overall verdict of the last check.")
    results: list[AnalysisResult] = Field(default_factory=list, max_length=48,
                                          description="Results of the last check (built-in metrics, then the "
                                                      "Prometheus checks).")
    window_start: datetime | None = Field(default=None, description="Start of the current window (the "
                                                                    "step's start).")
    latency_bounds: list[float] = Field(default_factory=list, max_length=63,
                                        description="Finite upper bounds (seconds) of the latency buckets.")
    pods: list[PodWindow] = Field(default_factory=list, max_length=200,
                                  description="Per-pod counters of the window.")


class RolloutEvent(ApiModel):
    """A past rollout outcome."""

    version: int = Field(ge=1, description="Model version.")
    event: str = Field(max_length=32, description="Promoted, RolledBack or Aborted.")
    time: datetime = Field(description="When.")
    message: str = Field(default="", max_length=1024, description="Details.")


class DeploymentStatus(ResourceStatus):
    """Where the rollout stands."""

    phase: DeploymentPhase | None = Field(default=None, description="Pending, Stable, Progressing, Paused, "
                                                                    "Promoting, RolledBack or Failed.")
    stable: StableStatus | None = Field(default=None, description="The version serving most traffic.")
    canary: CanaryStatus | None = Field(default=None, description="The version being rolled out.")
    queued: QueuedStatus | None = Field(default=None, description="The version that rolls out next, once the "
                                                                  "canary ends (spec.rollout.onNewVersion "
                                                                  "Queue).")
    analysis: AnalysisStatus | None = Field(default=None, description="Latest canary analysis.")
    rejected_versions: list[int] = Field(default_factory=list, max_length=100,
                                         description="Versions rolled back or aborted here; never retried "
                                                     "by `latest`.")
    rejected_generation: int | None = Field(
        default=None, ge=0,
        description="metadata.generation at the last rejection: a pinned rejected version is retried "
                    "only after the spec changes.")
    history: list[RolloutEvent] = Field(default_factory=list, max_length=20,
                                        description="Past rollouts, newest first.")
    url: str | None = Field(default=None, max_length=2048, description="In-cluster URL of the service.")
    replicas: int = Field(default=0, ge=0, description="Predictor pods wanted over all versions (the scale "
                                                        "subresource's status).")
    selector: str | None = Field(default=None, max_length=1024,
                                 description="Label selector of the predictor pods (the scale "
                                             "subresource's).")
