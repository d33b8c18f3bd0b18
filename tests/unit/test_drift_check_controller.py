"""The DriftPolicy controller's small decisions that need no cluster: whose retrain request wins, ports."""

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from loopwright.api.pipeline import RunTrigger
from loopwright.core.conditions import Verdict
from loopwright.core.drift import retrain
from loopwright.operator.controllers import _retrain, _runtime, driftpolicy


def test_only_an_earlier_request_of_the_same_policy_is_replaced():
    older = _retrain.older_request
    assert older("watch-100", policy="watch", than="watch-200")
    assert not older("watch-300", policy="watch", than="watch-200")  # ours is the older one
    assert not older("watch-200", policy="watch", than="watch-200")
    assert not older("manual-1", policy="watch", than="watch-200")  # a person's request stays
    assert not older("watch-x-100", policy="watch", than="watch-200")
    # Another policy whose name starts with ours is not ours.
    assert not older("watch-2-100", policy="watch", than="watch-200")


def _pod(*ports: tuple[str | None, int]) -> SimpleNamespace:
    container = SimpleNamespace(ports=[SimpleNamespace(name=n, container_port=p) for n, p in ports])
    return SimpleNamespace(spec=SimpleNamespace(containers=[container]))


def test_predictor_port_from_the_pod_spec():
    assert driftpolicy._port(_pod(("metrics", 9000), ("http", 8081))) == 8081
    assert driftpolicy._port(_pod((None, 7000))) == 7000
    assert driftpolicy._port(_pod()) == driftpolicy.DEFAULT_PORT


class _Policies:
    """The two status calls the check makes, against versions of one DriftPolicy kept in memory."""

    ConflictError = _runtime.ConflictError

    def __init__(self, *versions: dict[str, Any] | None) -> None:
        self.versions = list(versions)  # what each re-read returns, in order
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.conflicts = len(versions)  # each write before the last re-read meets a newer version

    def patch_status(self, kind: Any, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            raise _runtime.ConflictError("changed")
        self.writes.append((obj["metadata"]["resourceVersion"], status))
        return obj

    def get(self, kind: Any, *, namespace: str, name: str) -> dict[str, Any] | None:
        return self.versions.pop(0)


def _policy(
    version: str, *, generation: int = 1, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": "watch", "resourceVersion": version, "generation": generation}
    return {"metadata": meta, "status": {"conditions": conditions or []}}


CHECKED = [Verdict(type="Ready", status=True, reason="Checked"), Verdict(type="DriftDetected", status=False,
                                                                           reason="NoDrift")]


def test_a_check_publishes_onto_the_version_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _Policies()
    monkeypatch.setattr(driftpolicy, "_runtime", api)
    assert driftpolicy._write_status(_policy("1"), fields={"samples": 3}, verdicts=CHECKED)
    ((version, status),) = api.writes
    assert version == "1"
    assert status["samples"] == 3
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "Checked"), ("DriftDetected", "NoDrift"), ("Stalled", "NotStalled"),
        ("Reconciling", "Converged")]


def test_a_write_in_between_is_merged_into_not_erased(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reconcile published Pending (and another controller a condition of its own) after the
    # check read the policy: a merge patch from the stale read would replace that whole list.
    fresh = _policy("2", conditions=[{"type": "Ready", "status": "False", "reason": "Pending"},
                                     {"type": "Custom", "status": "True", "reason": "Kept"}])
    api = _Policies(fresh)
    monkeypatch.setattr(driftpolicy, "_runtime", api)
    assert driftpolicy._write_status(_policy("1"), fields={}, verdicts=CHECKED)
    ((version, status),) = api.writes
    assert version == "2"
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "Checked"), ("Custom", "Kept"), ("DriftDetected", "NoDrift"), ("Stalled", "NotStalled"),
        ("Reconciling", "Converged")]


def test_a_check_of_an_old_generation_or_a_deleted_policy_publishes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for after in (_policy("2", generation=2), None):
        api = _Policies(after)
        monkeypatch.setattr(driftpolicy, "_runtime", api)
        assert not driftpolicy._write_status(_policy("1"), fields={}, verdicts=CHECKED)
        assert api.writes == []


def test_what_the_policy_reads_of_the_deployments_rollout() -> None:
    mld = {"spec": {"model": "m", "version": "latest"},
           "status": {"stable": {"version": 3}, "canary": {"version": 5}, "queued": {"version": 6},
                      "rejectedVersions": [4],
                      "history": [{"version": 4, "event": "RolledBack"}, {"version": 4, "event": "Promoted"},
                                  {"version": 3, "event": "Promoted"}]}}
    view = _retrain.rollout(mld)
    assert (view.stable, view.canary, view.queued, set(view.rejected)) == (3, 5, 6, {4})
    assert view.history == {4: "RolledBack", 3: "Promoted"}  # the newest event of each version
    assert view.follows_latest
    pinned = _retrain.rollout({"spec": {"version": 3}, "status": {}})
    assert (pinned.stable, pinned.canary, pinned.follows_latest) == (None, None, False)


def _asked(**update: Any) -> Any:
    asked = retrain.requested(token="watch-1", pipeline="train", trigger=RunTrigger.DRIFT,
                              now=datetime(2026, 1, 1, tzinfo=UTC))
    return asked.model_copy(update=update)


def test_the_request_is_put_on_the_pipeline_until_a_run_answers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []
    events: list[str] = []
    monkeypatch.setattr(_retrain, "ensure_requested", lambda **kw: writes.append(kw["token"]))
    monkeypatch.setattr(driftpolicy.kopf, "event", lambda body, **kw: events.append(kw["reason"]))
    state = driftpolicy._State()

    def request(retrain: Any, *, new: bool) -> str:
        return asyncio.run(driftpolicy._request({}, state=state, namespace="ns", policy="watch",
                                                retrain=retrain, new=new, pipeline=None))

    assert request(_asked(), new=True).startswith("requested run watch-1 of TrainingPipeline train")
    assert (writes, events) == (["watch-1"], ["RetrainRequested"])
    assert request(_asked(), new=False) == ""  # known to be there: not written at every check
    state.requested = None  # a restarted operator: written again (idempotent), no second Event
    assert request(_asked(), new=False) == ""
    assert (writes, events) == (["watch-1", "watch-1"], ["RetrainRequested"])
    state.requested = None
    request(_asked(run="train-4"), new=False)  # a run answers it: nothing to write
    request(_asked(phase="AwaitingGate"), new=False)
    assert writes == ["watch-1", "watch-1"]


def test_an_event_when_the_retrain_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(driftpolicy.kopf, "event",
                        lambda body, **kw: events.append((kw["type"], kw["message"])))
    settled = _asked(phase="Settled", outcome="NoNewData", message="no new data since version 1")
    driftpolicy._settled_event({}, _asked(), _asked(phase="AwaitingGate"))
    driftpolicy._settled_event({}, settled, settled)
    assert events == []
    driftpolicy._settled_event({}, _asked(), settled)
    assert events == [("Warning", "Drift retrain watch-1: NoNewData: no new data since version 1")]


def test_the_request_annotation_names_the_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    patches: list[dict[str, Any]] = []
    api = SimpleNamespace(patch_namespaced_custom_object=lambda *args: patches.append(args[-1]))
    monkeypatch.setattr(_retrain.kube, "custom_objects", lambda: api)
    asked = _asked()  # the trigger as the status model keeps it: a plain string
    pipeline = {"metadata": {"annotations": {}}, "status": {}}
    _retrain.ensure_requested(namespace="ns", pipeline="train", policy="watch", token=asked.token,
                              trigger=asked.trigger, obj=pipeline)
    assert patches == [{"metadata": {"annotations": {"loopwright.dev/train-request": "watch-1",
                                                     "loopwright.dev/train-trigger": "Drift"}}}]
    handled = {"metadata": {"annotations": {}}, "status": {"handledTrainRequest": "watch-1"}}
    _retrain.ensure_requested(namespace="ns", pipeline="train", policy="watch", token="watch-1",
                              trigger=asked.trigger, obj=handled)
    assert len(patches) == 1
