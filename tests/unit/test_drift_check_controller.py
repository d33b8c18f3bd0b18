"""The DriftPolicy controller on the shared fake API: whose retrain request wins, ports, a check with
nothing served, a spec that cannot be judged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fake_api import NS, FakeApi
from loopwright.api.kinds import DEPLOYMENT, DRIFT_POLICY, TRAINING_PIPELINE
from loopwright.api.pipeline import RunTrigger
from loopwright.core.drift import retrain
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


def test_what_the_policy_reads_of_the_deployments_rollout() -> None:
    mld = {"spec": {"model": "m", "version": "latest"},
           "status": {"stable": {"version": 3}, "canary": {"version": 5}, "queued": {"version": 6},
                      "rejectedVersions": [4],
                      "history": [{"version": 4, "event": "RolledBack"}, {"version": 4, "event": "Promoted"},
                                  {"version": 3, "event": "Promoted"}]}}
    view = reads.rollout(mld)
    assert (view.stable, view.canary, view.queued, set(view.rejected)) == (3, 5, 6, {4})
    assert view.history == {4: "RolledBack", 3: "Promoted"}  # the newest event of each version
    assert view.follows_latest
    pinned = reads.rollout({"spec": {"version": 3}, "status": {}})
    assert (pinned.stable, pinned.canary, pinned.follows_latest) == (None, None, False)


def _asked(**update: Any) -> Any:
    asked = retrain.requested(token="watch-1", pipeline="train", trigger=RunTrigger.DRIFT,
                              now=datetime(2026, 1, 1, tzinfo=UTC))
    return asked.model_copy(update=update)


def _policy(api: FakeApi) -> dict[str, Any]:
    api.add(PIPELINES, {"metadata": {"name": "train"}, "spec": {}})
    return api.add(POLICIES, {"metadata": {"name": "watch"}, "spec": {}})


def _reasons(api: FakeApi) -> list[str]:
    return [e["reason"] for e in api.all(EVENTS).values()]


def test_the_request_is_put_on_the_pipeline_until_a_run_answers_it() -> None:
    api = FakeApi()
    policy = _policy(api)
    state = reads.State()

    def request(asked: Any, *, new: bool) -> str:
        return str(api.run(driftpolicy._request(api.context(), policy, state=state, retrain=asked, new=new,
                                                pipeline=None)))

    def writes() -> int:
        return api.calls.count("PATCH trainingpipelines/train")

    assert request(_asked(), new=True).startswith("requested run watch-1 of TrainingPipeline train")
    assert (writes(), _reasons(api)) == (1, ["RetrainRequested"])
    assert request(_asked(), new=False) == ""  # known to be there: not written at every check
    state.requested = None  # a restarted operator: read again, found there, no second Event
    assert request(_asked(), new=False) == ""
    assert (writes(), _reasons(api)) == (1, ["RetrainRequested"])
    state.requested = None
    api.calls.clear()
    request(_asked(run="train-4"), new=False)  # a run answers it: nothing to read or write
    request(_asked(phase="AwaitingGate"), new=False)
    assert api.calls == []


def test_an_event_when_the_retrain_settles() -> None:
    api = FakeApi()
    policy = _policy(api)
    settled = _asked(phase="Settled", outcome="NoNewData", message="no new data since version 1")
    api.run(driftpolicy._settled_event(api.context(), policy, _asked(), _asked(phase="AwaitingGate")))
    api.run(driftpolicy._settled_event(api.context(), policy, settled, settled))
    assert not api.all(EVENTS)
    api.run(driftpolicy._settled_event(api.context(), policy, _asked(), settled))
    (event,) = api.all(EVENTS).values()
    assert (event["type"], event["message"]) == (
        "Warning", "Drift retrain watch-1: NoNewData: no new data since version 1")


def test_the_request_annotation_names_the_trigger() -> None:
    api = FakeApi()
    _policy(api)
    asked = _asked()  # the trigger as the status model keeps it: a plain string
    pipeline = {"metadata": {"annotations": {}}, "status": {}}
    api.run(reads.ensure_requested(api.context(), namespace=NS, pipeline="train", policy="watch",
                                   token=asked.token, trigger=asked.trigger, obj=pipeline))
    annotations = (api.obj(PIPELINES, "train") or {})["metadata"]["annotations"]
    assert annotations == {"loopwright.dev/train-request": "watch-1",
                           "loopwright.dev/train-trigger": "Drift"}
    handled = {"metadata": {"annotations": {}}, "status": {"handledTrainRequest": "watch-1"}}
    api.calls.clear()
    api.run(reads.ensure_requested(api.context(), namespace=NS, pipeline="train", policy="watch",
                                   token="watch-1", trigger=asked.trigger, obj=handled))
    assert api.calls == []
