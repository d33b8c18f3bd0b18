"""The pod template overlay: where a pod runs and who it runs as, never how privileged it is.

One type for the three kinds that make pods (``Deployment.spec.podTemplate`` for predictors,
``TrainingPipeline.spec.podTemplate`` for trainer Jobs, ``Dataset.spec.podTemplate`` for
profiling Jobs) and for the operator-wide defaults (``LOOPWRIGHT_POD_DEFAULTS``). It has no
security context, host namespaces, volumes or containers on purpose: the restricted Pod
Security Standard of every Loopwright pod is not something an overlay can weaken.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema, field_validator

from loopwright.api._base import ApiModel
from loopwright.api.common import NAME_PATTERN, ResourceRequirements, rules

MAX_ENTRIES = 32
RESERVED_PREFIXES = ("loopwright.dev/", "app.kubernetes.io/")
"""Label and annotation keys the operator owns: selectors and ownership depend on them."""

_QUALIFIED_KEY = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_RESERVED_RULE = ("self.all(k, " + " && ".join(f"!k.startsWith('{p}')" for p in RESERVED_PREFIXES) + ")",
                  "keys under loopwright.dev/ and app.kubernetes.io/ belong to the operator")

LabelValue = Annotated[str, Field(max_length=63, pattern=_LABEL_VALUE)]
AnnotationValue = Annotated[str, Field(max_length=4096)]

FreeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A core/v1 object passed through as written (the API server validates it on the pod)."""


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(ApiModel):
    """A toleration, as in a Pod spec."""

    key: str | None = Field(default=None, max_length=316, pattern=_QUALIFIED_KEY,
                            description="Taint key; empty with operator Exists matches every taint.")
    operator: TolerationOperator = Field(default=TolerationOperator.EQUAL, description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, pattern=_LABEL_VALUE,
                              description="Taint value for operator Equal.")
    effect: TaintEffect | None = Field(default=None, description="NoSchedule, PreferNoSchedule or NoExecute; "
                                                                 "empty matches all.")
    toleration_seconds: int | None = Field(default=None, ge=0,
                                           description="How long a NoExecute taint is tolerated.")


class WhenUnsatisfiable(StrEnum):
    DO_NOT_SCHEDULE = "DoNotSchedule"
    SCHEDULE_ANYWAY = "ScheduleAnyway"


class TopologySpreadConstraint(ApiModel):
    """A topology spread constraint; without a labelSelector it spreads the pods of one workload."""

    max_skew: int = Field(ge=1, le=1000,
                          description="Largest allowed difference of pod counts between domains.")
    topology_key: str = Field(min_length=1, max_length=316, pattern=_QUALIFIED_KEY,
                              description="Node label of the domains, e.g. topology.kubernetes.io/zone.")
    when_unsatisfiable: WhenUnsatisfiable = Field(default=WhenUnsatisfiable.SCHEDULE_ANYWAY,
                                                  description="DoNotSchedule or ScheduleAnyway.")
    label_selector: FreeObject | None = Field(
        default=None, description="Pods counted (metav1.LabelSelector); omitted: the pods of this workload.")
    min_domains: int | None = Field(default=None, ge=1, description="Least number of eligible domains.")


class Affinity(ApiModel):
    """core/v1 Affinity. Its three parts are declared, so an unknown key is refused at admission (a
    CEL rule cannot range over an object whose fields are kept as written); each part is passed
    through as written, and the API server validates it on the pod."""

    node_affinity: FreeObject | None = Field(default=None, description="core/v1 NodeAffinity.")
    pod_affinity: FreeObject | None = Field(default=None, description="core/v1 PodAffinity.")
    pod_anti_affinity: FreeObject | None = Field(default=None, description="core/v1 PodAntiAffinity.")


class LocalObjectReference(ApiModel):
    """A Secret of the same namespace, by name."""

    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN, description="Secret name.")


class PodTemplate(ApiModel):
    """Scheduling, identity and resources of the pods Loopwright creates for this object.

    Merged over the operator-wide defaults: maps (nodeSelector, labels, annotations) key by key,
    every other field replaces the default when set.
    """

    node_selector: dict[str, LabelValue] | None = Field(
        default=None, max_length=MAX_ENTRIES, description="Node labels the pod requires.")
    tolerations: list[Toleration] | None = Field(default=None, max_length=MAX_ENTRIES,
                                                 description="Taints the pod tolerates.")
    affinity: Affinity | None = Field(
        default=None, description="core/v1 Affinity (nodeAffinity, podAffinity, podAntiAffinity).")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None, max_length=8, description="How pods spread across zones or nodes.")
    service_account_name: str | None = Field(
        default=None, max_length=253, pattern=NAME_PATTERN,
        description="ServiceAccount the pod runs as (e.g. one bound to a cloud identity); its API token "
                    "is still not mounted.")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, max_length=8, description="Secrets of this namespace used to pull the image.")
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=NAME_PATTERN,
                                            description="PriorityClass of the pod.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Container requests and limits, merged key by key over the defaults.")
    labels: dict[str, LabelValue] | None = Field(
        default=None, max_length=MAX_ENTRIES, description="Extra pod labels (not under loopwright.dev/ or "
                                                          "app.kubernetes.io/).",
        json_schema_extra=rules(_RESERVED_RULE))
    annotations: dict[str, AnnotationValue] | None = Field(
        default=None, max_length=MAX_ENTRIES, description="Extra pod annotations (not under loopwright.dev/ "
                                                          "or app.kubernetes.io/).",
        json_schema_extra=rules(_RESERVED_RULE))

    @field_validator("labels", "annotations")
    @classmethod
    def _not_reserved(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and any(k.startswith(RESERVED_PREFIXES) for k in value):
            raise ValueError("keys under loopwright.dev/ and app.kubernetes.io/ belong to the operator")
        return value
