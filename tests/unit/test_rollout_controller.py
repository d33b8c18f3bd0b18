"""The Deployment controller on the shared fake API: what the unit tests of the pure planner cannot see.

The first version deployed (workload, Service, alias, registry record), a promotion moving the
production alias and deleting the old workload, the alias released when the Deployment goes, a
model that cannot load shown once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from fake_api import NS, FakeApi
from loopwright.api.deployment import DeploymentSpec, DeploymentStatus, StableStatus
from loopwright.api.kinds import DEPLOYMENT, MODEL_VERSION
from loopwright.core.rollout import canary
from loopwright.operator.builders import predictor
from loopwright.operator.controllers import deployment
from loopwright.operator.controllers.deployment import converge
from loopwright.operator.controllers.deployment.observe import Observed
from loopwright.operator.runtime.client import EVENTS, SERVICES, WORKLOADS, ApiError, resource

MLD, MV = resource(DEPLOYMENT), resource(MODEL_VERSION)
SHA = "a" * 64


def _version(api: FakeApi, number: int, *, aliases: tuple[str, ...] = ()) -> None:
    api.add(MV, {"metadata": {"name": f"iris-v{number}"}, "spec": {
        "model": "iris", "version": number,
        "artifact": {"uri": f"s3://bkt/m{number}.skops", "sha256": SHA, "format": "skops"},
        "profileUri": f"s3://bkt/p{number}.json"},
        "status": {"phase": "Validated", **({"aliases": list(aliases)} if aliases else {})}})


def _aliases(api: FakeApi, number: int) -> list[str]:
    return list(((api.obj(MV, f"iris-v{number}") or {}).get("status") or {}).get("aliases") or [])


def _history(api: FakeApi, number: int) -> list[str]:
    status = (api.obj(MV, f"iris-v{number}") or {}).get("status") or {}
    return [e["event"] for e in status.get("deployments") or ()]


def test_the_first_version_is_deployed_with_the_alias_and_a_registry_record() -> None:
    api = FakeApi()
    _version(api, 1)
    api.add(MLD, {"metadata": {"name": "iris"}, "spec": {"model": "iris", "version": "latest"}})
    result = api.run(deployment.Deployments().reconcile(api.context(), (NS, "iris")))
    status = (api.obj(MLD, "iris") or {})["status"]
    assert status["stable"]["version"] == 1
    assert status["observedGeneration"] == 1
    assert list(api.all(WORKLOADS)) == ["iris-v1"]
    assert "iris" in api.all(SERVICES)
    assert _aliases(api, 1) == ["production"]
    assert _history(api, 1) == ["Promoted"]
    assert [e["reason"] for e in api.all(EVENTS).values()] == ["Deployed"]
    assert result.requeue_after is not None
    # Nothing changed: the next round writes no status and records nothing more.
    api.calls.clear()
    api.run(deployment.Deployments().reconcile(api.context(), (NS, "iris")))
    assert "PATCH deployments/iris/status" not in api.calls
    assert _history(api, 1) == ["Promoted"]


def _observed(api: FakeApi, obj: dict[str, Any]) -> Observed:
    versions = {n: api.obj(MV, f"iris-v{n}") or {} for n in (1, 2)}
    return Observed(obj=obj, spec=DeploymentSpec.model_validate(obj["spec"]), status=DeploymentStatus(),
                    versions=versions, ready={}, targets=[], created={})


def test_a_promotion_moves_the_alias_records_it_and_deletes_the_old_workload() -> None:
    api = FakeApi()
    _version(api, 1, aliases=("production", "pinned"))
    _version(api, 2)
    obj = api.add(MLD, {"metadata": {"name": "iris"}, "spec": {"model": "iris"}})
    api.add(WORKLOADS, {"metadata": {"name": "iris-v1", "labels": {"loopwright.dev/deployment": "iris"}}})
    api.add(WORKLOADS, {"metadata": {"name": "other", "labels": {"loopwright.dev/deployment": "elsewhere"}}})
    status = DeploymentStatus(stable=StableStatus(version=2, model_version="iris-v2"))
    plan = canary.Plan(status=status, alias=("iris-v1", "iris-v2"),
                       workloads=[canary.Workload(version=2, model_version="iris-v2", replicas=1)],
                       registry=[("iris-v2", "Promoted", "canary passed"), ("iris-v1", "Retired", "gone")])
    api.run(converge.converge(api.context(), _observed(api, obj), plan))
    assert _aliases(api, 1) == ["pinned"]
    assert _aliases(api, 2) == ["production"]
    assert (_history(api, 1), _history(api, 2)) == (["Retired"], ["Promoted"])
    assert sorted(api.all(WORKLOADS)) == ["iris-v2", "other"]


def test_the_alias_stays_on_a_version_another_deployment_serves() -> None:
    api = FakeApi()
    _version(api, 1, aliases=("production",))
    _version(api, 2)
    obj = api.add(MLD, {"metadata": {"name": "iris"}, "spec": {"model": "iris"}})
    api.add(MLD, {"metadata": {"name": "iris-eu"}, "spec": {"model": "iris"},
                  "status": {"stable": {"version": 1, "modelVersion": "iris-v1"}}})
    plan = canary.Plan(status=DeploymentStatus(stable=StableStatus(version=2, model_version="iris-v2")),
                       alias=("iris-v1", "iris-v2"))
    api.run(converge.converge(api.context(), _observed(api, obj), plan))
    assert _aliases(api, 1) == ["production"]
    assert _aliases(api, 2) == ["production"]


def test_a_deleted_deployment_releases_its_alias() -> None:
    api = FakeApi()
    _version(api, 1, aliases=("production",))
    body = {"metadata": {"name": "iris", "namespace": NS}, "status": {"stable": {"modelVersion": "iris-v1"}}}
    api.run(converge.release_alias(api.context(), body))
    assert _aliases(api, 1) == []


def _pod(message: str | None) -> dict[str, Any]:
    ended = {"terminated": {"exitCode": 1, "message": message}} if message else {}
    status = {"name": "predictor", "state": {"running": {}}, "lastState": ended}
    return {"metadata": {"name": "iris-v2-x", "labels": {"loopwright.dev/version": "2"}},
            "status": {"containerStatuses": [status]}}


def test_a_model_that_cannot_load_shows_in_the_status_with_one_event() -> None:
    spec = DeploymentSpec.model_validate({"model": "iris"})
    reason = "cannot serve the model: compiled model s3://b/m.lwc: sha256 is 00, expected c0"
    obs = Observed(obj={}, spec=spec, status=DeploymentStatus(), versions={}, ready={}, targets=[],
                   created={}, pods=[_pod(reason)])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    plan = canary.Plan(status=DeploymentStatus())
    deployment.publish(plan, predictor.model_loaded(obs.pods), generation=4, now=now)
    loaded = next(c for c in plan.status.conditions if c.type == "ModelLoaded")
    assert (loaded.status, loaded.reason) == ("False", "ModelLoadFailed")
    assert loaded.message == f"version 2 (pod iris-v2-x): {reason}"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "ModelLoadFailed")]
    # The next round sees the same failure: the condition stays, no second Event.
    again = canary.Plan(status=plan.status.model_copy(deep=True))
    deployment.publish(again, predictor.model_loaded(obs.pods), generation=4, now=now)
    assert again.events == []
    # Fixed (new pods load their model): the condition turns True, still without an Event.
    obs.pods = [_pod(None)]
    fixed = canary.Plan(status=again.status.model_copy(deep=True))
    deployment.publish(fixed, predictor.model_loaded(obs.pods), generation=4, now=now)
    assert next(c for c in fixed.status.conditions if c.type == "ModelLoaded").status == "True"
    assert fixed.events == []



def test_a_deleted_workload_or_service_wakes_its_deployment_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[tuple[str, str]] = []
    monkeypatch.setattr(deployment.MANAGER, "enqueue", lambda kind, key, **_: woken.append(key))
    monkeypatch.setitem(deployment.CONTROLLER.models, ("ns", "iris"), "iris")
    labels = {"loopwright.dev/deployment": "iris"}
    asyncio.run(deployment.child_event(type="MODIFIED", namespace="ns", labels=labels))
    assert woken == []  # only a deletion matters
    asyncio.run(deployment.child_event(type="DELETED", namespace="ns", labels=labels))
    asyncio.run(deployment.child_event(type="DELETED", namespace="ns",
                                       labels={"loopwright.dev/deployment": "unknown"}))
    assert woken == [("ns", "iris")]


def test_a_child_the_api_server_refuses_makes_the_spec_invalid_once() -> None:
    """A podTemplate value the CRD passes through (inside affinity) but the API server refuses on the
    apps/v1 Deployment: InvalidSpec with the server's words (so Stalled), and no next round."""
    api = FakeApi()
    _version(api, 1)
    api.add(MLD, {"metadata": {"name": "iris"}, "spec": {"model": "iris", "version": "latest"}})
    api.refuse("APPLY", "deployments", ApiError(422, "Invalid", 'Deployment.apps "iris-v1" is invalid: '
                                                "spec.template.spec.affinity.nodeAffinity."
                                                "requiredDuringSchedulingIgnoredDuringExecution."
                                                "nodeSelectorTerms: Required value"))
    result = api.run(deployment.Deployments().reconcile(api.context(), (NS, "iris")))
    assert result.requeue_after is None
    conditions = {c["type"]: c for c in (api.obj(MLD, "iris") or {})["status"]["conditions"]}
    assert (conditions["Ready"]["reason"], conditions["Stalled"]["status"]) == ("InvalidSpec", "True")
    assert "nodeSelectorTerms: Required value" in conditions["Stalled"]["message"]
