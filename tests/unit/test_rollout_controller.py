"""The Deployment controller's pure-ish helpers: the Prometheus check and the status diff."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from loopwright.api.deployment import DeploymentSpec, DeploymentStatus
from loopwright.core.rollout import canary
from loopwright.operator.controllers import deployment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_query_scalar_vector_empty_and_unreachable() -> None:
    answers = {
        "scalar": {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.25"]}},
        "vector": {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "3"]}]},
        },
        "empty": {"status": "success", "data": {"resultType": "vector", "result": []}},
        "bad": {"status": "error", "error": "parse error"},
    }

    async def scenario() -> dict[str, Any]:
        async def query(request: web.Request) -> web.Response:
            return web.Response(text=json.dumps(answers[request.query["query"]]))

        app = web.Application()
        app.router.add_get("/api/v1/query", query)
        runner = web.AppRunner(app)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            out = {
                q: await deployment._query_prometheus(address=f"http://127.0.0.1:{port}/", query=q, timeout=2)
                for q in answers
            }
            out["down"] = await deployment._query_prometheus(
                address=f"http://127.0.0.1:{_free_port()}", query="up", timeout=2
            )
            return out
        finally:
            await runner.cleanup()

    result = asyncio.run(scenario())
    assert result["scalar"].value == 0.25
    assert result["vector"].value == 3.0
    assert result["empty"].value is None
    assert "no single value" in str(result["empty"].error)
    assert result["bad"].value is None
    assert "parse error" in str(result["bad"].error)
    assert result["down"].value is None
    assert "failed" in str(result["down"].error)


def test_status_diff_ignores_nulls_at_any_depth() -> None:
    stored = {"phase": "Stable", "canary": {"version": 2, "step": 0}, "history": [{"a": 1}]}
    assert not deployment._differs(
        stored, {**stored, "canary": {"version": 2, "step": 0, "reachedTime": None}, "url": None}
    )
    assert deployment._differs(stored, {**stored, "canary": {"version": 2, "step": 1}})
    assert deployment._differs(stored, {**stored, "canary": None})


def _pod(message: str | None) -> Any:
    ended = SimpleNamespace(terminated=SimpleNamespace(exit_code=1, message=message) if message else None)
    status = SimpleNamespace(name="predictor", state=SimpleNamespace(terminated=None), last_state=ended)
    meta = SimpleNamespace(name="iris-v2-x", labels={"loopwright.dev/version": "2"})
    return SimpleNamespace(metadata=meta, status=SimpleNamespace(container_statuses=[status]))


def test_a_model_that_cannot_load_shows_in_the_status_with_one_event() -> None:
    spec = DeploymentSpec.model_validate({"model": "iris"})
    reason = "cannot serve the model: compiled model s3://b/m.lwc: sha256 is 00, expected c0"
    obs = deployment._Observed(obj={}, spec=spec, status=DeploymentStatus(), versions={}, ready={},
                               targets=[], created={}, pods=[_pod(reason)])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    plan = canary.Plan(status=DeploymentStatus())
    deployment._model_loaded(plan, obs, generation=4, now=now)
    loaded = next(c for c in plan.status.conditions if c.type == "ModelLoaded")
    assert (loaded.status, loaded.reason) == ("False", "ModelLoadFailed")
    assert loaded.message == f"version 2 (pod iris-v2-x): {reason}"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "ModelLoadFailed")]
    # The next round sees the same failure: the condition stays, no second Event.
    again = canary.Plan(status=plan.status.model_copy(deep=True))
    deployment._model_loaded(again, obs, generation=4, now=now)
    assert again.events == []
    # Fixed (new pods load their model): the condition turns True, still without an Event.
    obs.pods = [_pod(None)]
    fixed = canary.Plan(status=again.status.model_copy(deep=True))
    deployment._model_loaded(fixed, obs, generation=4, now=now)
    assert next(c for c in fixed.status.conditions if c.type == "ModelLoaded").status == "True"
    assert fixed.events == []
