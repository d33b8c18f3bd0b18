"""The Deployment controller's pure-ish helpers: the status diff."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from loopwright.api.deployment import DeploymentSpec, DeploymentStatus
from loopwright.core.rollout import canary
from loopwright.operator.controllers import deployment


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


def test_a_child_the_api_server_refuses_makes_the_spec_invalid_once(monkeypatch: Any) -> None:
    """A podTemplate value the CRD passes through (inside affinity) but the API server refuses on the
    apps/v1 Deployment: InvalidSpec with the server's words (so Stalled), and no next round."""
    import asyncio  # noqa: PLC0415

    import kubernetes  # noqa: PLC0415

    obj = {"apiVersion": "loopwright.dev/v1alpha1", "kind": "Deployment",
           "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "generation": 2,
                        "resourceVersion": "7"},
           "spec": {"model": "iris"}, "status": {}}
    writes: list[dict[str, Any]] = []
    refusal = kubernetes.client.ApiException(status=422, reason="Unprocessable Entity")
    refusal.body = ('{"message": "Deployment.apps \\"iris-v1\\" is invalid: spec.template.spec.affinity.'
                    'nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: '
                    'Required value"}')

    def converge(*_: Any) -> None:
        raise refusal

    spec = DeploymentSpec.model_validate(obj["spec"])
    monkeypatch.setattr(deployment, "_read", lambda namespace, name: obj)
    monkeypatch.setattr(deployment, "_observe", lambda o, s, st: deployment._Observed(
        obj=o, spec=spec, status=st, versions={}, ready={}, targets=[], created={}, pods=[]))
    monkeypatch.setattr(deployment, "_write_status", lambda o, status: writes.append(dict(status)))
    monkeypatch.setattr(deployment, "_post_events", lambda o, events: None)
    monkeypatch.setattr(deployment, "_converge", converge)
    assert asyncio.run(deployment._reconcile(namespace="ml", name="iris")) is None
    conditions = {c["type"]: c for c in writes[-1]["conditions"]}
    assert (conditions["Ready"]["reason"], conditions["Stalled"]["status"]) == ("InvalidSpec", "True")
    assert "nodeSelectorTerms: Required value" in conditions["Stalled"]["message"]
    assert writes[-1]["phase"] == "Failed"


def test_a_deleted_workload_or_service_wakes_its_deployment_at_once(monkeypatch: Any) -> None:
    async def scenario() -> list[tuple[str, str]]:
        scheduler = deployment._Scheduler()
        monkeypatch.setattr(deployment, "_scheduler", scheduler)
        scheduler.models[("ns", "iris")] = "iris"
        labels = {"loopwright.dev/deployment": "iris"}
        await deployment._on_child(event={"type": "MODIFIED"}, namespace="ns", labels=labels)
        assert scheduler.due == {}  # only a deletion matters
        await deployment._on_child(event={"type": "DELETED"}, namespace="ns", labels=labels)
        await deployment._on_child(event={"type": "DELETED"}, namespace="ns",
                                   labels={"loopwright.dev/deployment": "unknown"})
        return list(scheduler.due)

    assert asyncio.run(scenario()) == [("ns", "iris")]
