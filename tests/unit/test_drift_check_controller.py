"""The DriftPolicy controller on the shared fake API: whose retrain request wins, ports, a check with
nothing served, a spec that cannot be judged."""

from __future__ import annotations

from typing import Any

from fake_api import NS, FakeApi
from loopwright.api.kinds import DEPLOYMENT, DRIFT_POLICY, TRAINING_PIPELINE
from loopwright.api.pipeline import RunTrigger
from loopwright.operator.controllers import driftpolicy
from loopwright.operator.controllers.driftpolicy import reads
from loopwright.operator.runtime.client import EVENTS, resource

POLICIES, PIPELINES, MLD = resource(DRIFT_POLICY), resource(TRAINING_PIPELINE), resource(DEPLOYMENT)


def test_only_an_earlier_request_of_the_same_policy_is_replaced() -> None:
    older = reads.older_request
    assert older("watch-100", policy="watch", than="watch-200")
    assert not older("watch-300", policy="watch", than="watch-200")  # ours is the older one
    assert not older("watch-200", policy="watch", than="watch-200")
    assert not older("manual-1", policy="watch", than="watch-200")  # a person's request stays
    assert not older("watch-x-100", policy="watch", than="watch-200")
    # Another policy whose name starts with ours is not ours.
    assert not older("watch-2-100", policy="watch", than="watch-200")


def _pod(*ports: tuple[str | None, int]) -> dict[str, Any]:
    declared = [{"containerPort": p, **({"name": n} if n else {})} for n, p in ports]
    return {"spec": {"containers": [{"ports": declared}]}}


def test_predictor_port_from_the_pod_spec() -> None:
    assert reads.port(_pod(("metrics", 9000), ("http", 8081))) == 8081
    assert reads.port(_pod((None, 7000))) == 7000
    assert reads.port(_pod()) == reads.DEFAULT_PORT


def test_the_request_is_written_once_and_never_over_someone_elses() -> None:
    api = FakeApi()
    api.add(PIPELINES, {"metadata": {"name": "p"}, "spec": {}})
    ctx = api.context()
    api.run(reads.ensure_requested(ctx, namespace=NS, pipeline="p", policy="watch", token="watch-200",
                                   trigger=RunTrigger.DRIFT))
    annotations = (api.obj(PIPELINES, "p") or {})["metadata"]["annotations"]
    assert annotations == {"loopwright.dev/train-request": "watch-200",
                           "loopwright.dev/train-trigger": "Drift"}
    api.calls.clear()
    api.run(reads.ensure_requested(ctx, namespace=NS, pipeline="p", policy="watch", token="watch-200",
                                   trigger=RunTrigger.DRIFT))
    assert api.calls == ["GET trainingpipelines/p"]
    jane = {"metadata": {"annotations": {"loopwright.dev/train-request": "jane"}}}
    api.run(api.patch(PIPELINES, NS, "p", jane))
    api.run(reads.ensure_requested(ctx, namespace=NS, pipeline="p", policy="watch", token="watch-300",
                                   trigger=RunTrigger.DRIFT))
    kept = (api.obj(PIPELINES, "p") or {})["metadata"]["annotations"]
    assert kept["loopwright.dev/train-request"] == "jane"


def _check(api: FakeApi) -> float | None:
    return api.run(driftpolicy.DriftPolicies().reconcile(api.context(), (NS, "watch"))).requeue_after


def test_a_policy_of_a_deployment_that_serves_nothing_says_so_once_and_looks_again() -> None:
    api = FakeApi()
    api.add(POLICIES, {"metadata": {"name": "watch"}, "spec": {"deploymentRef": {"name": "iris"},
                                                               "interval": "10s"}})
    api.add(MLD, {"metadata": {"name": "iris"}, "spec": {"model": "iris"}})
    assert _check(api) == 10
    assert _check(api) == 10
    conditions = (api.obj(POLICIES, "watch") or {})["status"]["conditions"]
    ready = next(c for c in conditions if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NotServing")
    assert ready["message"] == "Deployment iris serves no stable version yet"
    assert not api.all(EVENTS)


def test_an_invalid_policy_says_so_and_waits_for_a_new_spec() -> None:
    api = FakeApi()
    api.add(POLICIES, {"metadata": {"name": "watch"}, "spec": {"interval": "10s"}})
    assert _check(api) is None
    ready = (api.obj(POLICIES, "watch") or {})["status"]["conditions"][0]
    assert (ready["type"], ready["reason"]) == ("Ready", "InvalidSpec")
