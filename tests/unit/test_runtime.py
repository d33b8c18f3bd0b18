"""The controller runtime: the keyed queue, the status writer, the event recorder, the client's verbs."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest

from fake_api import NS, FakeApi
from loopwright import storage
from loopwright.api.kinds import DRIFT_POLICY
from loopwright.core.conditions import Verdict
from loopwright.operator.runtime.cache import BoundedCache
from loopwright.operator.runtime.client import EVENTS, JOBS, ApiError, resource
from loopwright.operator.runtime.controller import OUTAGES
from loopwright.operator.runtime.events import EventRecorder
from loopwright.operator.runtime.queue import Result, WorkQueue
from loopwright.operator.runtime.status import Conflict, Decision, StatusWriter

POLICY = resource(DRIFT_POLICY)


# -- the queue ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeats_coalesce_and_a_key_is_reconciled_once_at_a_time() -> None:
    seen: list[str] = []
    running: set[str] = set()

    async def reconcile(key: str) -> Result:
        assert key not in running, "two reconciles of one key at once"
        running.add(key)
        seen.append(key)
        await asyncio.sleep(0.01)
        if seen.count("a") == 1 and key == "a":
            queue.add("a")  # an event while it runs: once more afterwards, not in parallel
            queue.add("a")
        running.discard(key)
        return Result()

    async def main() -> None:
        queue.add("a")
        queue.add("a")
        queue.add("b")
        queue.start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(seen) >= 3 and not len(queue):
                break
        await queue.stop()

    queue: WorkQueue[str] = WorkQueue(reconcile, name="test", workers=4)
    asyncio.run(main())
    assert sorted(seen) == ["a", "a", "b"]


def test_requeue_after_and_the_earliest_time_wins() -> None:
    clock = Clock()
    seen: list[str] = []

    async def reconcile(key: str) -> Result:
        seen.append(key)
        return Result(requeue_after=30)

    async def main() -> None:
        queue.add("a")
        await queue.drain()
        assert seen == ["a"]
        assert queue.next_due() == 30
        queue.add("a", delay=10)  # earlier than the requeue: wins
        queue.add("a", delay=50)  # later: ignored
        assert queue.next_due() == 10
        clock.now = 9
        queue.due_now()
        await queue.drain()
        assert seen == ["a"]
        clock.now = 10
        queue.due_now()
        await queue.drain()
        assert seen == ["a", "a"]
        queue.forget("a")
        assert queue.next_due() is None

    queue: WorkQueue[str] = WorkQueue(reconcile, name="test", clock=clock)
    asyncio.run(main())


def _retry_delays(queue: WorkQueue[str], clock: Clock, *, rounds: int) -> list[float | None]:
    """Reconcile key "a" `rounds` times, each when its retry is due: the delays the queue chose."""

    async def main() -> list[float | None]:
        delays = []
        queue.add("a")
        for _ in range(rounds):
            await queue.drain()
            delays.append(queue.next_due())
            clock.now += delays[-1] or 0
            queue.due_now()
        return delays

    return asyncio.run(main())


def test_a_failing_reconcile_backs_off_exponentially_and_success_resets_it() -> None:
    clock = Clock()
    outcomes = [RuntimeError("boom"), RuntimeError("boom"), Result()]

    async def reconcile(key: str) -> Result:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    queue: WorkQueue[str] = WorkQueue(reconcile, name="test", clock=clock)
    assert _retry_delays(queue, clock, rounds=3) == [0.5, 1.0, None]


def test_an_unreachable_api_server_or_s3_is_tried_again_within_seconds_not_a_minute() -> None:
    """Ten failures in a row: 60 s apart at the end for a bug, at most 5 s for a refused connection
    to the API server or to S3 (the objects converge soon after either is back, as the fault suite
    measures), as the manager tells its queues."""

    def delays(error: Exception) -> list[float | None]:
        clock = Clock()

        async def reconcile(key: str) -> Result:
            raise error

        queue: WorkQueue[str] = WorkQueue(reconcile, name="test", clock=clock, unreachable=OUTAGES)
        return _retry_delays(queue, clock, rounds=10)

    assert max(d or 0 for d in delays(aiohttp.ClientConnectorError(Mock(), OSError(111, "refused")))) == 5.0
    assert max(d or 0 for d in delays(storage.EndpointUnreachableError("s3://b/k: S3 unreachable"))) == 5.0
    assert max(d or 0 for d in delays(storage.StorageError("s3://b/k: SlowDown"))) == 60.0
    assert max(d or 0 for d in delays(RuntimeError("boom"))) == 60.0


def test_workers_bound_the_reconciles_in_flight() -> None:
    active, peak = 0, 0

    async def reconcile(key: int) -> Result:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005)
        active -= 1
        return Result()

    async def main() -> None:
        for i in range(20):
            queue.add(i)
        queue.start()
        while len(queue) or active:
            await asyncio.sleep(0.005)
        await queue.stop()

    queue: WorkQueue[int] = WorkQueue(reconcile, name="test", workers=3)
    asyncio.run(main())
    assert peak == 3


# -- the status writer -------------------------------------------------------------------------------

CHECKED = [Verdict(type="Ready", status=True, reason="Checked"),
           Verdict(type="DriftDetected", status=False, reason="NoDrift")]


def _policy(api: FakeApi, **status: Any) -> dict[str, Any]:
    return api.add(POLICY, {"metadata": {"name": "watch"}, "spec": {"x": 1}, "status": status})


def test_a_decision_is_written_once_and_a_repeat_costs_no_request() -> None:
    api = FakeApi()
    obj = _policy(api)
    writer = StatusWriter(api)
    written = api.run(writer.write(POLICY, obj, Decision(fields={"samples": 3}, verdicts=CHECKED)))
    assert written is not None
    assert written["status"]["samples"] == 3
    assert written["status"]["observedGeneration"] == 1
    api.calls.clear()
    again = api.run(writer.write(POLICY, written, Decision(fields={"samples": 3}, verdicts=CHECKED)))
    assert again == written
    assert api.calls == []


def test_on_conflict_the_decision_is_merged_into_the_fresh_status() -> None:
    api = FakeApi()
    stale = _policy(api)
    # Someone else published a condition of their own after the reconcile read the object.
    api.run(api.patch_status(POLICY, NS, "watch", {"status": {"conditions": [
        {"type": "Custom", "status": "True", "reason": "Kept"}]}}))
    decision = Decision(fields={"samples": 3}, verdicts=CHECKED)
    written = api.run(StatusWriter(api).write(POLICY, stale, decision))
    assert written is not None
    conditions = [(c["type"], c["reason"]) for c in written["status"]["conditions"]]
    assert conditions[:3] == [("Custom", "Kept"), ("Ready", "Checked"), ("DriftDetected", "NoDrift")]
    assert {t for t, _ in conditions[3:]} == {"Stalled", "Reconciling"}  # kstatus, derived by merge
    assert api.calls == ["PATCH driftpolicies/watch/status"] * 2 + ["GET driftpolicies/watch",
                                                                     "PATCH driftpolicies/watch/status"]


def test_a_newer_generation_or_a_deleted_object_drops_the_write() -> None:
    api = FakeApi()
    stale = _policy(api)
    api.run(api.patch(POLICY, NS, "watch", {"spec": {"x": 2}}))
    assert api.run(StatusWriter(api).write(POLICY, stale, Decision(verdicts=CHECKED))) is None
    assert "conditions" not in (api.obj(POLICY, "watch") or {}).get("status", {})
    del api.objects[next(iter(api.objects))]
    assert api.run(StatusWriter(api).write(POLICY, stale, Decision(verdicts=CHECKED))) is None


def test_a_reconcile_that_depends_on_what_it_read_decides_again() -> None:
    api = FakeApi()
    stale = _policy(api)
    api.run(api.patch_status(POLICY, NS, "watch", {"status": {"samples": 1}}))
    with pytest.raises(Conflict):
        api.run(StatusWriter(api).write(POLICY, stale, Decision(fields={"samples": 2}),
                                        merge_on_conflict=False))


def test_replace_deletes_what_was_not_decided_and_initial_ready_fills_a_gap() -> None:
    api = FakeApi()
    obj = _policy(api, old={"a": 1}, samples=1)
    initial = Verdict(type="Ready", status=False, reason="Checking")
    written = api.run(StatusWriter(api).write(POLICY, obj, Decision(fields={"samples": 2}, replace=True,
                                                                     initial_ready=initial)))
    assert written is not None
    assert "old" not in written["status"]
    ready, *derived = [(c["type"], c["reason"]) for c in written["status"]["conditions"]]
    assert ready == ("Ready", "Checking")
    assert {t for t, _ in derived} == {"Stalled", "Reconciling"}
    decision = Decision(verdicts=CHECKED[1:], initial_ready=initial)
    later = api.run(StatusWriter(api).write(POLICY, written, decision))
    assert later is not None
    decided = [(c["type"], c["reason"]) for c in later["status"]["conditions"]
               if c["type"] not in ("Stalled", "Reconciling")]
    assert decided == [("Ready", "Checking"), ("DriftDetected", "NoDrift")]


# -- the event recorder ------------------------------------------------------------------------------


def test_repeats_of_an_event_aggregate_into_one_with_a_count() -> None:
    api = FakeApi()
    obj = _policy(api)
    recorder = EventRecorder(api)
    for _ in range(3):
        api.run(recorder.record(obj, type_="Warning", reason="NotServing", message="no pods"))
    api.run(recorder.record(obj, type_="Warning", reason="NotServing", message="other"))
    events = sorted(api.all(EVENTS).values(), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in events] == [("no pods", 3), ("other", 1)]
    assert events[0]["involvedObject"]["uid"] == obj["metadata"]["uid"]


def test_an_expired_event_is_posted_anew_and_refusals_are_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi()
    obj = _policy(api)
    recorder = EventRecorder(api)
    api.run(recorder.record(obj, type_="Normal", reason="Checked", message="ok"))
    api.objects = {k: v for k, v in api.objects.items() if "events" not in k[0]}
    api.run(recorder.record(obj, type_="Normal", reason="Checked", message="ok"))
    assert [e["count"] for e in api.all(EVENTS).values()] == [1]
    api.refuse("POST", "events", ApiError(403, "Forbidden", "no"))
    api.run(recorder.record(obj, type_="Normal", reason="Other", message="ok"))
    assert "cannot post event Other on ns/watch" in caplog.text


# -- the client and the cache ------------------------------------------------------------------------


def test_create_or_adopt_adopts_what_an_earlier_attempt_created() -> None:
    api = FakeApi()
    job = {"metadata": {"name": "p-1", "namespace": NS}, "spec": {}}
    made, created = api.run(api.create_or_adopt(JOBS, job))
    again, created_again = api.run(api.create_or_adopt(JOBS, job))
    assert (created, created_again) == (True, False)
    assert again["metadata"]["uid"] == made["metadata"]["uid"]
    assert api.run(api.get(JOBS, NS, "nope")) is None
    assert api.run(api.delete(JOBS, NS, "p-1")) is True
    assert api.run(api.delete(JOBS, NS, "p-1")) is False


def test_the_cache_keeps_the_most_recently_used() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "b" not in cache
    assert sorted(cache) == ["a", "c"]
