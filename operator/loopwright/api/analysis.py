"""How a canary is judged: built-in metrics with bounds, and Prometheus checks (a Deployment's own in
``spec.rollout.analysis``, or shared through AnalysisTemplates)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from loopwright.api._base import ApiModel
from loopwright.api.common import (
    LABEL_NAME_PATTERN,
    Duration,
    ObjectReference,
    bounds_rules,
    check_bounds,
    list_map,
    rules,
    section,
)
from loopwright.api.urls import FetchURL


class Bound(ApiModel):
    """An upper bound on a metric."""

    max: float = Field(ge=0.0, description="Largest acceptable value.")


class ErrorRateBound(ApiModel):
    """Fraction of canary requests answered with a 5xx code."""

    max: float = Field(default=0.01, ge=0.0, le=1.0, description="Largest acceptable fraction (0..1).")


class LatencyBound(ApiModel):
    """95th percentile of the canary's prediction latency."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("has(self.max) || has(self.maxRelativeToStable)",
         "latencyP95 needs max, maxRelativeToStable or both"),
    ))

    max: Duration | None = Field(default=None, description="Absolute bound, e.g. 50ms.")
    max_relative_to_stable: float | None = Field(
        default=None, ge=1.0, le=100.0,
        description="Bound relative to the stable version's p95, e.g. 1.5 = at most 50% slower.")

    @model_validator(mode="after")
    def _one_bound(self) -> LatencyBound:
        if self.max is None and self.max_relative_to_stable is None:
            raise ValueError("latencyP95 needs max, maxRelativeToStable or both")
        return self


CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")
"""Headers that carry credentials: they come from a check's secretRef, never from the spec."""
MAX_PROMETHEUS_CHECKS = 16


class Header(ApiModel):
    """A plain HTTP header sent with a query, e.g. X-Scope-OrgID for a multi-tenant Thanos or Mimir."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("!self.name.matches('(?i)^(" + "|".join(CREDENTIAL_HEADERS) + ")$')",
         "credentials never go inline: put them in a Secret and name it in secretRef"),
    ))

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
                      description="Header name.")
    value: str = Field(max_length=1024, description="Header value (not a credential: use secretRef).")

    @model_validator(mode="after")
    def _no_credentials(self) -> Header:
        if self.name.lower() in CREDENTIAL_HEADERS:
            raise ValueError("credentials never go inline: put them in a Secret and name it in secretRef")
        return self


class PrometheusCheck(ApiModel):
    """A PromQL query whose scalar result must stay within bounds, judged at every analysis check."""

    model_config = ConfigDict(json_schema_extra=bounds_rules("a Prometheus check"))

    name: str = Field(min_length=1, max_length=40, pattern=LABEL_NAME_PATTERN,
                      description="Name of the check, unique per rollout; its result is prometheus/<name>.")
    address: FetchURL = Field(description="Base URL of the Prometheus API (Prometheus, Thanos, Mimir, ...); "
                                          "never a link-local or metadata address.")
    query: str = Field(min_length=1, max_length=4096,
                       description="PromQL returning one scalar or a one-sample vector. {{version}}, "
                                   "{{stableVersion}}, {{model}}, {{deployment}} and {{namespace}} are "
                                   "replaced by the canary's values.")
    min: float | None = Field(default=None, description="Smallest acceptable value.")
    max: float | None = Field(default=None, description="Largest acceptable value.")
    headers: list[Header] = Field(default_factory=list, max_length=16,
                                  description="Plain headers sent with the query.",
                                  json_schema_extra=list_map("name"))
    secret_ref: ObjectReference | None = Field(
        default=None,
        description="Secret (in the Deployment's namespace) with the credentials: key `token` is sent as "
                    "`Authorization: Bearer`, keys `username` and `password` as basic auth. The operator "
                    "reads it by name, which needs the loopwright-operator-secrets RoleBinding there.")

    @model_validator(mode="after")
    def _check_bounds(self) -> PrometheusCheck:
        check_bounds(self.min, self.max, what="a Prometheus check")
        return self


def unique_checks(checks: list[PrometheusCheck]) -> list[PrometheusCheck]:
    """Pydantic's twin of the list-map's uniqueness (the API server enforces it by key)."""
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise ValueError("Prometheus checks must have unique names")
    return checks


PrometheusChecks = Annotated[
    list[PrometheusCheck],
    AfterValidator(unique_checks),
    Field(max_length=MAX_PROMETHEUS_CHECKS, json_schema_extra=list_map("name")),
]
"""Checks keyed by name (a Deployment's own, or an AnalysisTemplate's)."""


class AnalysisMetrics(ApiModel):
    """Metrics compared between canary and stable. A metric without data is inconclusive, never a pass."""

    error_rate: ErrorRateBound = section(ErrorRateBound, description="5xx fraction of canary requests.")
    latency_p95: LatencyBound | None = Field(default=None, description="Canary p95 latency.")
    prediction_drift: Bound | None = Field(
        default=None,
        description="PSI of the canary's prediction distribution against the stable's (e.g. max 0.25).")
    prometheus: PrometheusChecks = Field(
        default_factory=list,
        description="Custom PromQL checks, each with its own bounds, headers and credentials; added to those "
                    "of the AnalysisTemplates in analysis.templates.")


class Analysis(ApiModel):
    """How each canary step is judged."""

    interval: Duration = Field(default="1m", description="Time between two analysis checks.")
    failure_limit: int = Field(default=2, ge=0, le=100,
                               description="Failed checks tolerated before rolling back.")
    min_requests: int = Field(default=50, ge=0,
                              description="Canary requests needed per check; fewer makes it inconclusive.")
    metrics: AnalysisMetrics = section(AnalysisMetrics, description="Metrics and their bounds.")
    templates: list[ObjectReference] = Field(
        default_factory=list, max_length=8,
        description="AnalysisTemplates (mlat, same namespace) whose Prometheus checks every step is also "
                    "judged by: checks shared across Deployments. A missing template makes the check "
                    "Inconclusive, never a pass.",
        json_schema_extra=list_map("name"))
