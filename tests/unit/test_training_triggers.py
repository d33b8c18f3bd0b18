"""When a pipeline starts a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.api.pipeline import TRAIN_REQUEST_ANNOTATION, Run, TrainingPipelineStatus, Triggers
from loopwright.core.training.triggers import TRAIN_TRIGGER_ANNOTATION, decide, next_schedule

NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def _decide(
    *,
    triggers: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    version: str | None = V1,
    now: datetime = NOW,
) -> Any:
    return decide(
        triggers=Triggers.model_validate(triggers or {}),
        status=TrainingPipelineStatus.model_validate(status or {}),
        annotations=annotations or {},
        validated_version=version,
        now=now,
    )


def test_first_validated_version_starts_a_run() -> None:
    decision = _decide()
    assert decision.trigger == "NewData"
    assert V1 in decision.why


def test_the_same_version_does_not_train_twice() -> None:
    assert _decide(status={"trainedDatasetVersion": V1}).trigger is None
    assert _decide(triggers={"onNewData": False}).trigger is None


def test_request_annotation_is_one_request_one_run() -> None:
    request = {TRAIN_REQUEST_ANNOTATION: "abc"}
    decision = _decide(status={"trainedDatasetVersion": V1}, annotations=request)
    assert decision.trigger == "Manual"
    assert decision.handled_request == "abc"
    handled = {"trainedDatasetVersion": V1, "handledTrainRequest": "abc"}
    assert _decide(status=handled, annotations=request).trigger is None
    drift = _decide(
        status=handled, annotations={TRAIN_REQUEST_ANNOTATION: "d-1", TRAIN_TRIGGER_ANNOTATION: "Drift"}
    )
    assert drift.trigger == "Drift"
    odd = _decide(
        status=handled, annotations={TRAIN_REQUEST_ANNOTATION: "x", TRAIN_TRIGGER_ANNOTATION: "Schedule"}
    )
    assert odd.trigger == "Manual"


def test_requests_ignore_the_cooldown_but_automatic_triggers_wait() -> None:
    recent = {"lastTriggerTime": (NOW - timedelta(minutes=1)).isoformat(), "trainedDatasetVersion": V1}
    assert _decide(status=recent, annotations={TRAIN_REQUEST_ANNOTATION: "r"}).trigger == "Manual"
    waiting = _decide(status=recent, version=V2, triggers={"cooldown": "10m"})
    assert waiting.trigger is None
    assert "cooldown" in waiting.why
    assert waiting.wake_at == NOW + timedelta(minutes=9)
    later = _decide(status=recent, version=V2, triggers={"cooldown": "10m"}, now=NOW + timedelta(minutes=9))
    assert later.trigger == "NewData"


def test_suspend_blocks_everything_and_requests_wait() -> None:
    decision = _decide(triggers={"suspend": True}, annotations={TRAIN_REQUEST_ANNOTATION: "r"})
    assert decision.trigger is None
    assert "waits" in decision.why
    assert decision.handled_request is None


def test_no_validated_version_no_run() -> None:
    decision = _decide(version=None, annotations={TRAIN_REQUEST_ANNOTATION: "r"})
    assert decision.trigger is None
    assert "validated" in decision.why


def test_one_run_at_a_time() -> None:
    active = {"runs": [Run(id=1, name="p-1", trigger="Manual", phase="Running").to_wire()], "runCount": 1}
    assert _decide(status=active, annotations={TRAIN_REQUEST_ANNOTATION: "r"}, version=V2).trigger is None


def test_schedule_publishes_the_next_slot_and_fires_when_due() -> None:
    hourly = {"schedule": "0 * * * *", "onNewData": False}
    idle = _decide(triggers=hourly)
    assert idle.trigger is None
    assert idle.next_scheduled_time == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert idle.wake_at == idle.next_scheduled_time
    due = _decide(
        triggers=hourly,
        status={"nextScheduledTime": "2026-03-02T11:00:00Z"},
        now=datetime(2026, 3, 2, 11, 0, 5, tzinfo=UTC),
    )
    assert due.trigger == "Schedule"
    assert due.next_scheduled_time == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_a_slot_inside_the_cooldown_is_skipped() -> None:
    status = {"nextScheduledTime": "2026-03-02T11:00:00Z", "lastTriggerTime": "2026-03-02T10:58:00Z"}
    decision = _decide(
        triggers={"schedule": "0 * * * *", "onNewData": False, "cooldown": "10m"},
        status=status,
        now=datetime(2026, 3, 2, 11, 0, 1, tzinfo=UTC),
    )
    assert decision.trigger is None
    assert decision.next_scheduled_time == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_a_changed_schedule_recomputes_the_slot() -> None:
    decision = _decide(
        triggers={"schedule": "15 * * * *", "onNewData": False},
        status={"nextScheduledTime": "2026-03-02T11:00:00Z"},
    )
    assert decision.next_scheduled_time == datetime(2026, 3, 2, 11, 15, tzinfo=UTC)
    assert next_schedule("@daily", after=NOW) == datetime(2026, 3, 3, tzinfo=UTC)


def test_schedule_in_a_time_zone_follows_daylight_saving() -> None:
    berlin = {"schedule": "0 2 * * *", "timeZone": "Europe/Berlin", "onNewData": False}
    winter = _decide(triggers=berlin, now=datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
    assert winter.next_scheduled_time == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)  # 02:00 CET
    summer = _decide(triggers=berlin, now=datetime(2026, 6, 2, 10, 30, tzinfo=UTC))
    assert summer.next_scheduled_time == datetime(2026, 6, 3, 0, 0, tzinfo=UTC)  # 02:00 CEST
    due = _decide(triggers=berlin, status={"nextScheduledTime": "2026-06-03T00:00:00Z"},
                  now=datetime(2026, 6, 3, 0, 0, 3, tzinfo=UTC))
    assert due.trigger == "Schedule"
    assert due.next_scheduled_time == datetime(2026, 6, 4, 0, 0, tzinfo=UTC)


def test_a_slot_recorded_in_another_zone_is_recomputed() -> None:
    # 11:00 UTC is not 02:00 in Berlin: the zone changed since the slot was recorded.
    decision = _decide(triggers={"schedule": "0 2 * * *", "timeZone": "Europe/Berlin", "onNewData": False},
                       status={"nextScheduledTime": "2026-03-02T11:00:00Z"})
    assert decision.trigger is None
    assert decision.next_scheduled_time == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)


class FakeClock:
    """The operator's clock, advanced by hand: each tick is one reconcile at that time."""

    def __init__(self, start: datetime, triggers: dict[str, Any]) -> None:
        self.now = start
        self.triggers = triggers
        self.status: dict[str, Any] = {"trainedDatasetVersion": V1}
        self.started: list[datetime] = []

    def tick(self, now: datetime) -> Any:
        self.now = now
        decision = _decide(triggers=self.triggers, status=self.status, now=now)
        self.status["nextScheduledTime"] = decision.next_scheduled_time.isoformat()
        if decision.trigger is not None:
            self.started.append(now)
            self.status["lastTriggerTime"] = now.isoformat()
        return decision


def test_an_operator_down_across_missed_slots_runs_once_not_once_per_slot() -> None:
    clock = FakeClock(datetime(2026, 3, 2, 10, 30, tzinfo=UTC), {"schedule": "0 * * * *", "onNewData": False})
    clock.tick(clock.now)  # records 11:00
    clock.tick(datetime(2026, 3, 2, 11, 0, 1, tzinfo=UTC))
    assert clock.started == [datetime(2026, 3, 2, 11, 0, 1, tzinfo=UTC)]
    # Down from 11:05 to 15:20: the slots 12:00 to 15:00 passed unseen.
    back = clock.tick(datetime(2026, 3, 2, 15, 20, tzinfo=UTC))
    assert back.trigger == "Schedule"
    assert "12:00" in back.why
    assert back.next_scheduled_time == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    assert clock.tick(datetime(2026, 3, 2, 15, 21, tzinfo=UTC)).trigger is None
    assert len(clock.started) == 2


def test_a_slot_missed_by_more_than_the_starting_deadline_is_skipped() -> None:
    hourly = {"schedule": "0 * * * *", "onNewData": False, "startingDeadline": "30m"}
    clock = FakeClock(datetime(2026, 3, 2, 10, 30, tzinfo=UTC), hourly)
    clock.tick(clock.now)
    late = clock.tick(datetime(2026, 3, 2, 11, 45, tzinfo=UTC))
    assert late.trigger is None
    assert "startingDeadline" in late.why
    assert late.next_scheduled_time == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    in_time = clock.tick(datetime(2026, 3, 2, 12, 20, tzinfo=UTC))
    assert in_time.trigger == "Schedule"
    assert clock.started == [datetime(2026, 3, 2, 12, 20, tzinfo=UTC)]


def test_a_new_pipeline_never_runs_for_past_slots() -> None:
    clock = FakeClock(datetime(2026, 3, 2, 10, 30, tzinfo=UTC), {"schedule": "@daily", "onNewData": False})
    assert clock.tick(clock.now).trigger is None
    assert clock.status["nextScheduledTime"] == "2026-03-03T00:00:00+00:00"


def test_time_zone_is_checked_against_the_tz_database() -> None:
    assert Triggers.model_validate({"schedule": "@daily", "timeZone": "America/New_York"}).time_zone
    for bad in ({"schedule": "@daily", "timeZone": "Mars/Olympus_Mons"}, {"timeZone": "UTC"},
                {"startingDeadline": "1h"}):
        with pytest.raises(ValidationError):
            Triggers.model_validate(bad)
