"""Pieces shared by the five kinds: references, durations, conditions, CEL rules.

Every cross-field rule is written twice on purpose: once as a CEL expression that
the API server enforces at admission (see :func:`rules`), once as a pydantic
validator so the controllers refuse the same objects. ``tests/cel_cases.py`` holds
the good and bad examples both must agree on.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator
from pydantic.config import JsonDict

from loopwright.api import names
from loopwright.api._base import ApiModel

# Spelled in loopwright.api.names, which the kubectl plugin imports without pydantic.
GROUP = names.GROUP
VERSION = names.VERSION
API_VERSION = names.API_VERSION
DURATION_PATTERN = names.DURATION_PATTERN
parse_duration = names.parse_duration

# DNS-1123 names: what Kubernetes accepts for the objects these fields point at.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"

_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        examples=["30s", "5m", "1h30m"],
    ),
]
"""A Go-style duration such as ``90s`` or ``1h30m`` (units ms, s, m, h)."""

def _quantity(value: int | str) -> int | str:
    if isinstance(value, str) and re.match(_QUANTITY_PATTERN, value) is None:
        raise ValueError(f"{value!r} is not a resource quantity such as 500m, 2 or 1Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema({
        "x-kubernetes-int-or-string": True,
        "pattern": _QUANTITY_PATTERN,
    }),
]
"""A Kubernetes resource quantity such as ``500m``, ``2`` or ``1Gi``."""

ParamValue = Annotated[
    str | int | float | bool | None,
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]
"""A scalar hyper-parameter value; the estimator allow-list checks its type."""

_M = TypeVar("_M", bound=ApiModel)


def rules(*pairs: tuple[str, str]) -> JsonDict:
    """``json_schema_extra`` carrying CEL rules as ``(rule, message)`` pairs.

    crdgen copies them to ``x-kubernetes-validations`` on the same schema node.
    """
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in pairs]}


def section(model: type[_M], *, description: str) -> Any:
    """A nested object that is always present, with every default of its fields.

    The CRD's default is the model's own defaults written out in full, not ``{}``:
    the API server checks a default against the CEL rules as it is, without first
    filling in the defaults nested below it.
    """
    return Field(default_factory=model, description=description,
                 json_schema_extra={"default": model().model_dump(mode="json", by_alias=True,
                                                                  exclude_none=True)})


def bounds_rules(what: str) -> JsonDict:
    """The CEL rules of a min/max pair: at least one bound, and min not above max."""
    return rules(
        ("has(self.min) || has(self.max)", f"{what} needs min, max or both"),
        ("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max"),
    )


def check_bounds(low: float | None, high: float | None, *, what: str) -> None:
    """Pydantic's twin of :func:`bounds_rules`."""
    if low is None and high is None:
        raise ValueError(f"{what} needs min, max or both")
    if low is not None and high is not None and low > high:
        raise ValueError("min must not exceed max")


def list_map(*keys: str) -> JsonDict:
    """Mark a list as a map keyed by ``keys`` (server-side apply merges, unique keys)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: JsonDict = {"x-kubernetes-list-type": "set"}


class ObjectReference(ApiModel):
    """A reference to an object of a known kind in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN,
                      description="Name of the referenced object, in the same namespace.")


class SecretKeyReference(ApiModel):
    """A key of a Secret in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN,
                      description="Name of the Secret, in the same namespace.")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
                     description="Key inside the Secret's data.")


class ResourceRequirements(ApiModel):
    """CPU and memory for a container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = Field(
        default=None, max_length=8,
        description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.")
    limits: dict[str, Quantity] | None = Field(
        default=None, max_length=8,
        description="Maximum resources, e.g. {cpu: 2, memory: 4Gi}.")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """One aspect of the object's state, in the shape of metav1.Condition (KEP-1623)."""

    type: str = Field(
        min_length=1, max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of the condition in CamelCase, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="A CamelCase word saying why the condition has its status.")
    message: str = Field(default="", max_length=32768,
                         description="Human-readable details about the last transition.")
    observed_generation: int | None = Field(
        default=None, ge=0,
        description="metadata.generation of the object that this condition was computed from.")
    last_transition_time: datetime = Field(
        description="When the status of this condition last changed.")


class ResourceStatus(ApiModel):
    """What every kind's status has: the generation seen and its conditions."""

    observed_generation: int | None = Field(
        default=None, ge=0,
        description="The metadata.generation that the operator last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16,
        description="Current state of the object as KEP-1623 conditions, one per type.",
        json_schema_extra=list_map("type"))

    @model_validator(mode="after")
    def _unique_condition_types(self) -> ResourceStatus:
        types = [c.type for c in self.conditions]
        if len(set(types)) != len(types):
            raise ValueError("status.conditions must hold at most one condition per type")
        return self

    def condition(self, type_: str) -> Condition | None:
        """The condition of the given type, if the object has one."""
        return next((c for c in self.conditions if c.type == type_), None)
