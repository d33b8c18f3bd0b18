"""The Prometheus checks of a canary analysis (pure): which checks, the request of each, the verdict.

A rollout's checks are its own (``analysis.metrics.prometheus``) followed by those of the
AnalysisTemplates it names, in order. A name used twice keeps its first definition, so a
Deployment can override one check of a shared template by defining a check of the same name.
A template that cannot be read makes an Inconclusive result of its own: a missing check is
never a pass.

Credentials come only from a Secret (``secretRef``): ``token`` becomes ``Authorization: Bearer``,
``username`` and ``password`` basic auth. Nothing Prometheus sends back is copied into a result
beyond the number it returned and fixed words (its ``errorType``, the HTTP status): an answer
may echo headers or carry data nobody meant to put in a Kubernetes status.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopwright.api.analysis import Analysis, PrometheusCheck
from loopwright.api.analysistemplate import AnalysisTemplateSpec
from loopwright.api.deployment import AnalysisResult, Verdict

PREFIX = "prometheus/"
MAX_CHECKS = 32
"""Checks per rollout, templates included; beyond them the analysis is Inconclusive (status bound)."""
QUERY_PATH = "/api/v1/query"
_ERROR_TYPES = frozenset({"timeout", "canceled", "execution", "bad_data", "internal", "unavailable",
                          "not_found", "not_acceptable"})


@dataclass(frozen=True, kw_only=True)
class Target:
    """What a query may refer to through its placeholders."""

    namespace: str
    deployment: str
    model: str
    version: int
    stable_version: int | None


@dataclass(frozen=True, kw_only=True)
class Value:
    """The outcome of one query: a number, or why there is none (in words of our own)."""

    value: float | None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class Request:
    url: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


class CredentialsError(ValueError):
    """The check's Secret holds no usable credentials."""


def resolve(analysis: Analysis, templates: Mapping[str, AnalysisTemplateSpec | str]
            ) -> tuple[list[PrometheusCheck], list[AnalysisResult]]:
    """The rollout's checks, and Inconclusive results for templates that could not be used.

    ``templates`` maps each named template to its spec, or to why it could not be read.
    """
    checks: list[PrometheusCheck] = []
    problems: list[AnalysisResult] = []
    seen: set[str] = set()
    sources: list[Sequence[PrometheusCheck]] = [analysis.metrics.prometheus]
    for ref in analysis.templates:
        template = templates.get(ref.name, f"AnalysisTemplate {ref.name} was not read")
        if isinstance(template, str):
            problems.append(AnalysisResult(metric=f"template/{ref.name}"[:64],
                                           verdict=Verdict.INCONCLUSIVE, message=template[:1024]))
        else:
            sources.append(template.prometheus)
    for source in sources:
        for check in source:
            if check.name not in seen:
                seen.add(check.name)
                checks.append(check)
    if len(checks) > MAX_CHECKS:
        problems.append(AnalysisResult(metric="prometheus", verdict=Verdict.INCONCLUSIVE,
                                       message=f"{len(checks)} Prometheus checks, at most {MAX_CHECKS} run"))
        checks = checks[:MAX_CHECKS]
    return checks, problems


def query(check: PrometheusCheck, target: Target) -> str:
    """The check's PromQL with the placeholders filled in."""
    values = {"version": str(target.version), "model": target.model, "deployment": target.deployment,
              "namespace": target.namespace,
              "stableVersion": "" if target.stable_version is None else str(target.stable_version)}
    text = check.query
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def credentials(secret: Mapping[str, str], *, name: str) -> dict[str, str]:
    """The Authorization header from a Secret's (decoded) data."""
    if secret.get("token"):
        return {"Authorization": f"Bearer {secret['token'].strip()}"}
    if secret.get("username") and secret.get("password"):
        pair = f"{secret['username']}:{secret['password']}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    raise CredentialsError(f"Secret {name} has neither a token key nor username and password keys")


def request(check: PrometheusCheck, target: Target, *, secret: Mapping[str, str] | None = None) -> Request:
    """The instant query of one check: URL, parameters and headers (credentials from ``secret``)."""
    headers = {h.name: h.value for h in check.headers}
    if check.secret_ref is not None:
        if secret is None:
            raise CredentialsError(f"Secret {check.secret_ref.name} was not read")
        headers |= credentials(secret, name=check.secret_ref.name)
    return Request(url=check.address.rstrip("/") + QUERY_PATH, params={"query": query(check, target)},
                   headers=headers)


def parse(status: int, doc: Any) -> Value:
    """The number in a query's answer: a scalar, or a vector with exactly one sample."""
    if not isinstance(doc, dict):
        return Value(value=None, error=f"HTTP {status}: not a Prometheus API answer")
    if doc.get("status") != "success":
        kind = doc.get("errorType")
        what = f"errorType {kind}" if kind in _ERROR_TYPES else "an error"
        return Value(value=None, error=f"HTTP {status}: Prometheus answered {what}")
    data: dict[str, Any] = doc["data"] if isinstance(doc.get("data"), dict) else {}
    result = data.get("result")
    try:
        if data.get("resultType") == "scalar" and isinstance(result, list) and len(result) == 2:
            return Value(value=float(result[1]))
        if data.get("resultType") == "vector" and isinstance(result, list) and len(result) == 1:
            return Value(value=float(result[0]["value"][1]))
    except (TypeError, ValueError, KeyError, IndexError):
        return Value(value=None, error="the answer holds no number")
    count = len(result) if isinstance(result, list) else 0
    return Value(value=None, error=f"the query returned no single value ({count} series)")


def judge(check: PrometheusCheck, outcome: Value) -> AnalysisResult:
    """Pass within the bounds, Fail outside, Inconclusive without a number."""
    low, high = check.min, check.max
    threshold = high if high is not None else low
    metric = PREFIX + check.name
    if outcome.value is None or not math.isfinite(outcome.value):
        why = outcome.error or "the query returned no value"
        return AnalysisResult(metric=metric, threshold=threshold, verdict=Verdict.INCONCLUSIVE,
                              message=why[:1024])
    value = outcome.value
    ok = (low is None or value >= low) and (high is None or value <= high)
    bounds = " and ".join(part for part in (f">= {low:g}" if low is not None else "",
                                            f"<= {high:g}" if high is not None else "") if part)
    return AnalysisResult(metric=metric, value=value, threshold=threshold,
                          verdict=Verdict.PASS if ok else Verdict.FAIL,
                          message=f"{check.name} returned {value:g}, must be {bounds}")
