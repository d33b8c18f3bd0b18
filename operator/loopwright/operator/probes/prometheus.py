"""The Prometheus checks of a canary analysis: read the templates and Secrets, query, judge.

The decisions are pure (:mod:`loopwright.core.rollout.prometheus`); this module does the I/O:
it reads the AnalysisTemplates a Deployment names and the Secrets its checks name (by name only,
where the namespace grants the loopwright-operator-secrets RoleBinding), and runs the queries
concurrently, each with a total timeout. Every failure becomes an Inconclusive result that says
why in our own words; an answer's body is never copied into the status.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable
from http import HTTPStatus

import aiohttp
import kubernetes
from pydantic import ValidationError

from loopwright.api.analysis import Analysis, PrometheusCheck
from loopwright.api.analysistemplate import AnalysisTemplateSpec
from loopwright.api.deployment import AnalysisResult
from loopwright.api.kinds import ANALYSIS_TEMPLATE
from loopwright.core.egress import Policy
from loopwright.core.rollout import prometheus
from loopwright.operator import kube
from loopwright.operator.probes import egress

USER_AGENT = "loopwright-operator"


def read_templates(namespace: str, names: Iterable[str]) -> dict[str, AnalysisTemplateSpec | str]:
    """Each named AnalysisTemplate's spec, or why it cannot be used."""
    out: dict[str, AnalysisTemplateSpec | str] = {}
    for name in names:
        try:
            obj = kube.get_object(ANALYSIS_TEMPLATE, namespace=namespace, name=name)
            out[name] = AnalysisTemplateSpec.model_validate(obj.get("spec") or {})
        except kubernetes.client.ApiException as exc:
            out[name] = (f"AnalysisTemplate {name} not found" if exc.status == HTTPStatus.NOT_FOUND
                         else f"cannot read AnalysisTemplate {name}: {exc.status} {exc.reason}")
        except ValidationError as exc:
            out[name] = f"AnalysisTemplate {name} is invalid: {exc.errors()[0]['msg']}"
    return out


def read_secrets(namespace: str, names: Iterable[str]) -> dict[str, dict[str, str] | str]:
    """Each named Secret's decoded data, or why it cannot be used."""
    out: dict[str, dict[str, str] | str] = {}
    for name in names:
        try:
            secret = kube.core().read_namespaced_secret(name, namespace)
        except kubernetes.client.ApiException as exc:
            out[name] = (f"Secret {name} not found" if exc.status == HTTPStatus.NOT_FOUND else
                         f"cannot read Secret {name}: the operator needs the loopwright-operator-secrets "
                         f"RoleBinding in namespace {namespace}" if exc.status == HTTPStatus.FORBIDDEN else
                         f"cannot read Secret {name}: {exc.status} {exc.reason}")
            continue
        out[name] = {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()}
    return out


async def query(request: prometheus.Request, *, timeout: float, policy: Policy) -> prometheus.Value:
    """One instant query; the number, or why there is none (never the body of the answer)."""
    if (why := policy.refusal(request.url)) is not None:
        return prometheus.Value(value=None, error=f"Prometheus query refused: {why}")
    try:
        async with (
            egress.session(policy, timeout=timeout) as session,
            session.get(request.url, params=request.params, allow_redirects=False,
                        headers={"User-Agent": USER_AGENT, **request.headers}) as response,
        ):
            try:
                doc = await response.json(content_type=None)
            except ValueError:
                doc = None
            return prometheus.parse(response.status, doc)
    except egress.RefusedError as exc:
        return prometheus.Value(value=None, error=f"Prometheus query refused: {exc}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return prometheus.Value(value=None, error=f"Prometheus query failed: {type(exc).__name__}")


async def run(analysis: Analysis, *, target: prometheus.Target, timeout: float,
              policy: Policy | None = None) -> list[AnalysisResult]:
    """The results of every Prometheus check of a rollout (its own and its templates')."""
    if not analysis.metrics.prometheus and not analysis.templates:
        return []
    names = [t.name for t in analysis.templates]
    templates = await asyncio.to_thread(read_templates, target.namespace, names)
    checks, results = prometheus.resolve(analysis, templates)
    secrets = await asyncio.to_thread(read_secrets, target.namespace,
                                      sorted({c.secret_ref.name for c in checks if c.secret_ref is not None}))

    async def one(check: PrometheusCheck) -> AnalysisResult:
        secret = secrets.get(check.secret_ref.name) if check.secret_ref is not None else None
        if isinstance(secret, str):
            return prometheus.judge(check, prometheus.Value(value=None, error=secret))
        try:
            request = prometheus.request(check, target, secret=secret)
        except prometheus.CredentialsError as exc:
            return prometheus.judge(check, prometheus.Value(value=None, error=str(exc)))
        return prometheus.judge(check, await query(request, timeout=timeout, policy=policy or Policy()))

    return [*results, *await asyncio.gather(*(one(c) for c in checks))]

