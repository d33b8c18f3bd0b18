"""Prometheus checks of a canary analysis: which run, what is sent, what is judged, what is kept."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from loopwright.api.analysis import Analysis
from loopwright.api.analysistemplate import AnalysisTemplateSpec
from loopwright.api.deployment import Verdict
from loopwright.core.rollout import prometheus
from loopwright.operator.controllers import analysistemplate
from loopwright.operator.probes import prometheus as probe

TARGET = prometheus.Target(namespace="ml", deployment="churn", model="churn", version=4, stable_version=3)


def _check(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "address": "http://prom:9090",
        "query": f"{name}{{version='{{{{version}}}}'}}",
        "max": 1.0,
        **extra,
    }


def _analysis(*checks: dict[str, Any], templates: tuple[str, ...] = ()) -> Analysis:
    return Analysis.model_validate(
        {"metrics": {"prometheus": list(checks)}, "templates": [{"name": t} for t in templates]}
    )


def _template(*checks: dict[str, Any]) -> AnalysisTemplateSpec:
    return AnalysisTemplateSpec.model_validate({"prometheus": list(checks)})


def test_own_checks_come_first_and_override_a_templates_check_of_the_same_name():
    analysis = _analysis(_check("errors", max=0.01), templates=("slo", "gone", "more"))
    checks, problems = prometheus.resolve(
        analysis,
        {
            "slo": _template(_check("errors", max=0.5), _check("latency")),
            "gone": "AnalysisTemplate gone not found",
            "more": _template(_check("latency", max=9.0), _check("saturation")),
        },
    )
    assert [(c.name, c.max) for c in checks] == [("errors", 0.01), ("latency", 1.0), ("saturation", 1.0)]
    assert [(p.metric, p.verdict, p.message) for p in problems] == [
        ("template/gone", Verdict.INCONCLUSIVE, "AnalysisTemplate gone not found")
    ]
    # A template the caller did not read at all is not a silent pass either.
    _, problems = prometheus.resolve(_analysis(templates=("slo",)), {})
    assert problems[0].verdict == Verdict.INCONCLUSIVE


def test_too_many_checks_are_cut_and_said():
    many = [_check(f"c{i}") for i in range(prometheus.MAX_CHECKS + 1)]
    analysis = _analysis(*many[:16], templates=("a", "b"))
    checks, problems = prometheus.resolve(analysis, {"a": _template(*many[16:32]), "b": _template(many[32])})
    assert len(checks) == prometheus.MAX_CHECKS
    assert [(p.metric, p.verdict) for p in problems] == [("prometheus", Verdict.INCONCLUSIVE)]


def test_the_query_names_the_canary_and_credentials_come_from_the_secret():
    check = _analysis(
        _check("errors", headers=[{"name": "X-Scope-OrgID", "value": "team-a"}], secretRef={"name": "prom"})
    ).metrics.prometheus[0]
    request = prometheus.request(check, TARGET, secret={"token": "s3cret\n"})
    assert request.url == "http://prom:9090/api/v1/query"
    assert request.params == {"query": "errors{version='4'}"}
    assert request.headers == {"X-Scope-OrgID": "team-a", "Authorization": "Bearer s3cret"}
    basic = prometheus.request(check, TARGET, secret={"username": "u", "password": "p"})
    assert basic.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    with pytest.raises(prometheus.CredentialsError, match="neither a token key nor username and password"):
        prometheus.request(check, TARGET, secret={"other": "x"})
    query = _analysis(
        _check("q", query="{{model}} {{deployment}} {{namespace}} {{stableVersion}} {{version}}")
    )
    assert prometheus.query(query.metrics.prometheus[0], TARGET) == "churn churn ml 3 4"


def test_credentials_are_refused_inline():
    with pytest.raises(ValueError, match="credentials never go inline"):
        _analysis(_check("x", headers=[{"name": "authorization", "value": "Bearer abc"}]))
    with pytest.raises(ValueError, match="unique names"):
        _analysis(_check("x"), _check("x"))


@pytest.mark.parametrize(
    ("status", "doc", "value", "error"),
    [
        (200, {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.25"]}}, 0.25, None),
        (
            200,
            {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "3"]}]}},
            3.0,
            None,
        ),
        (
            200,
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            None,
            "the query returned no single value (0 series)",
        ),
        (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error near secret-ish text"},
            None,
            "HTTP 400: Prometheus answered errorType bad_data",
        ),
        (
            401,
            {"status": "error", "errorType": "<script>", "error": "token abc rejected"},
            None,
            "HTTP 401: Prometheus answered an error",
        ),
        (502, None, None, "HTTP 502: not a Prometheus API answer"),
    ],
)
def test_answers_become_a_number_or_our_own_words(status, doc, value, error):
    outcome = prometheus.parse(status, doc)
    assert outcome.value == value
    assert outcome.error == error


def test_judging_against_the_checks_own_bounds():
    check = _analysis(_check("lat", min=0.1, max=0.5)).metrics.prometheus[0]
    assert prometheus.judge(check, prometheus.Value(value=0.3)).verdict == Verdict.PASS
    fail = prometheus.judge(check, prometheus.Value(value=0.7))
    assert (fail.metric, fail.verdict, fail.message) == (
        "prometheus/lat",
        Verdict.FAIL,
        "lat returned 0.7, must be >= 0.1 and <= 0.5",
    )
    missing = prometheus.judge(check, prometheus.Value(value=None, error="down"))
    assert (missing.verdict, missing.message) == (Verdict.INCONCLUSIVE, "down")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_probe_sends_headers_and_never_keeps_the_body(monkeypatch):
    seen: list[dict[str, str]] = []

    async def scenario() -> list[Any]:
        async def answer(request: web.Request) -> web.Response:
            seen.append(
                {
                    "query": request.query["query"],
                    "auth": request.headers.get("Authorization", ""),
                    "org": request.headers.get("X-Scope-OrgID", ""),
                }
            )
            if request.headers.get("Authorization") != "Bearer t0k":
                return web.Response(
                    status=401,
                    text=json.dumps(
                        {"status": "error", "errorType": "unauthorized", "error": "bad token Bearer t0k"}
                    ),
                )
            return web.Response(
                text=json.dumps(
                    {"status": "success", "data": {"resultType": "scalar", "result": [0, "0.002"]}}
                )
            )

        app = web.Application()
        app.router.add_get("/api/v1/query", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        address = f"http://127.0.0.1:{port}"
        analysis = _analysis(
            _check(
                "errors",
                address=address,
                headers=[{"name": "X-Scope-OrgID", "value": "a"}],
                secretRef={"name": "prom"},
            ),
            _check("unauth", address=address),
            _check("forbidden", address=address, secretRef={"name": "locked"}),
            _check("down", address=f"http://127.0.0.1:{_free_port()}"),
            templates=("missing",),
        )
        try:
            return await probe.run(analysis, target=TARGET, timeout=2)
        finally:
            await runner.cleanup()

    monkeypatch.setattr(
        probe, "read_templates", lambda ns, names: {n: f"AnalysisTemplate {n} not found" for n in names}
    )
    monkeypatch.setattr(
        probe,
        "read_secrets",
        lambda ns, names: {
            "prom": {"token": "t0k"},
            "locked": "cannot read Secret locked: the operator needs the loopwright-operator-secrets "
            "RoleBinding in namespace ml",
        },
    )
    results = {r.metric: r for r in asyncio.run(scenario())}
    assert results["prometheus/errors"].verdict == Verdict.PASS
    assert results["prometheus/errors"].value == 0.002
    assert results["prometheus/unauth"].message == "HTTP 401: Prometheus answered an error"
    assert "RoleBinding" in results["prometheus/forbidden"].message
    assert results["prometheus/down"].message == "Prometheus query failed: ClientConnectorError"
    assert results["template/missing"].verdict == Verdict.INCONCLUSIVE
    assert {"query": "errors{version='4'}", "auth": "Bearer t0k", "org": "a"} in seen
    assert not any("t0k" in r.message for r in results.values())


def test_secrets_and_templates_are_read_by_name(monkeypatch):
    def read_secret(name: str, namespace: str) -> Any:
        if name == "locked":
            raise kubernetes.client.ApiException(status=403, reason="Forbidden")
        return SimpleNamespace(data={"token": base64.b64encode(b"abc").decode()})

    def get_object(kind: Any, *, namespace: str, name: str) -> dict[str, Any]:
        if name == "gone":
            raise kubernetes.client.ApiException(status=404, reason="Not Found")
        return {"spec": {"prometheus": [_check("x")] if name == "ok" else []}}

    monkeypatch.setattr(probe.kube, "core", lambda: SimpleNamespace(read_namespaced_secret=read_secret))
    monkeypatch.setattr(probe.kube, "get_object", get_object)
    assert probe.read_secrets("ml", ["prom", "locked"]) == {
        "prom": {"token": "abc"},
        "locked": "cannot read Secret locked: the operator needs the loopwright-operator-secrets RoleBinding "
        "in namespace ml",
    }
    templates = probe.read_templates("ml", ["ok", "gone", "bad"])
    assert isinstance(templates["ok"], AnalysisTemplateSpec)
    assert templates["gone"] == "AnalysisTemplate gone not found"
    assert str(templates["bad"]).startswith("AnalysisTemplate bad is invalid")


def test_a_template_publishes_ready_with_its_checks():
    spec = {"prometheus": [_check("errors"), _check("latency")]}
    good = analysistemplate.template_decision(spec)
    (ready,) = good.verdicts
    assert (ready.type, ready.status, ready.reason) == ("Ready", True, "Valid")
    assert ready.message == "2 Prometheus checks: errors, latency"
    assert good.fields == {"checks": 2}
    bad = analysistemplate.template_decision({"prometheus": []})
    assert bad.verdicts[0].reason == "InvalidSpec"
    assert bad.fields == {"checks": None}
