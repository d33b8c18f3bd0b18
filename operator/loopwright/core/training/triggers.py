"""When a TrainingPipeline starts a run: on request, on schedule, on new data; cooldown and suspend.

Rules, in order:

* A run in progress blocks every trigger (at most one run at a time); triggers that fire
  meanwhile are not queued, except the on-demand request, which waits for its turn.
* ``suspend`` starts nothing; schedule slots passing meanwhile are skipped, and a request waits.
* Without a validated Dataset version nothing can train; a request waits for one.
* On request (``loopwright.dev/train-request``): a token differing from
  ``status.handledTrainRequest`` starts one run; the cooldown does not apply (a person or a
  DriftPolicy asked, and the DriftPolicy has a cooldown of its own).
* Schedule (cron, read in ``timeZone``, UTC by default) and new data are automatic and respect
  the cooldown counted from the last run's start; a schedule slot inside the cooldown is skipped,
  new data waits until the cooldown is over.

Missed scheduled times (CronJob's semantics, stated): the status keeps one pending slot,
``nextScheduledTime``. When the operator comes back after being down across several scheduled
times, that recorded slot is due and ONE run starts for all of them (never one per missed time);
the next slot is then the first one after now. With ``startingDeadline`` set, a slot found more
than that late is skipped instead (no run; the next slot is published), like a CronJob's
``startingDeadlineSeconds``. A pipeline seen for the first time never runs for past slots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from croniter import croniter

from loopwright.api import names
from loopwright.api.common import parse_duration
from loopwright.api.pipeline import (
    TRAIN_REQUEST_ANNOTATION,
    RunTrigger,
    TrainingPipelineStatus,
    Triggers,
)
from loopwright.core.training.runs import active_run

TRAIN_TRIGGER_ANNOTATION = names.TRAIN_TRIGGER_ANNOTATION
"""Optional companion of the request annotation: Manual (default), Drift or Performance."""
REQUEST_TRIGGERS = frozenset({RunTrigger.MANUAL, RunTrigger.DRIFT, RunTrigger.PERFORMANCE})


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What to do now, and when to look again."""

    trigger: RunTrigger | None
    why: str
    """Why a run starts, or why none does (shown in the Ready/Training conditions)."""
    handled_request: str | None
    """The request token to record as handled (unchanged when no request was consumed)."""
    next_scheduled_time: datetime | None
    wake_at: datetime | None
    """The earliest time the decision may change without any event (cooldown end, schedule)."""


def zone(triggers: Triggers) -> tzinfo:
    """The zone the schedule is read in (UTC unless ``timeZone`` names one)."""
    return ZoneInfo(triggers.time_zone) if triggers.time_zone else UTC


def next_schedule(schedule: str, *, after: datetime, tz: tzinfo = UTC) -> datetime:
    """The first slot of ``schedule`` (5-field cron read in ``tz``) strictly after ``after``, in UTC."""
    result: datetime = croniter(schedule, after.astimezone(tz)).get_next(datetime)
    return result.astimezone(UTC)


def _current_slot(triggers: Triggers, recorded: datetime | None, now: datetime) -> datetime | None:
    """The pending slot: the recorded one if it belongs to this schedule (and zone), else the next one."""
    if triggers.schedule is None:
        return None
    tz = zone(triggers)
    if recorded is not None and croniter.match(triggers.schedule, recorded.astimezone(tz)):
        return recorded
    return next_schedule(triggers.schedule, after=now, tz=tz)


def decide(
    *,
    triggers: Triggers,
    status: TrainingPipelineStatus,
    annotations: Mapping[str, str],
    validated_version: str | None,
    now: datetime,
) -> Decision:
    slot = _current_slot(triggers, status.next_scheduled_time, now)
    slot_due = slot is not None and now >= slot
    next_slot = (next_schedule(triggers.schedule, after=now, tz=zone(triggers))
                 if slot_due and triggers.schedule else slot)
    deadline = parse_duration(triggers.starting_deadline) if triggers.starting_deadline else None
    missed = slot_due and slot is not None and deadline is not None and now - slot > deadline
    handled = status.handled_train_request
    token = annotations.get(TRAIN_REQUEST_ANNOTATION) or None
    requested = token is not None and token != handled

    def wait(why: str, *, wake_at: datetime | None = None) -> Decision:
        wake = min((t for t in (next_slot, wake_at) if t is not None), default=None)
        return Decision(trigger=None, why=why, handled_request=handled,
                        next_scheduled_time=next_slot, wake_at=wake)

    if active_run(status.runs) is not None:
        return wait("a run is in progress")
    if triggers.suspend:
        return wait("suspended: no new runs" + (" (a train request waits)" if requested else ""))
    if validated_version is None:
        return wait("waiting for a validated Dataset version")
    if requested:
        raw = annotations.get(TRAIN_TRIGGER_ANNOTATION) or RunTrigger.MANUAL
        trigger = RunTrigger(raw) if raw in REQUEST_TRIGGERS else RunTrigger.MANUAL
        return Decision(trigger=trigger, why=f"train request {token!r}", handled_request=token,
                        next_scheduled_time=next_slot, wake_at=next_slot)

    new_data = triggers.on_new_data and validated_version != status.trained_dataset_version
    if missed and not new_data:
        return wait(f"schedule slot {slot.isoformat() if slot else ''} missed by more than "
                    f"startingDeadline {triggers.starting_deadline}: skipped")
    slot_due = slot_due and not missed
    if not (slot_due or new_data):
        return wait("idle")
    cooldown_end = (status.last_trigger_time + parse_duration(triggers.cooldown)
                    if status.last_trigger_time is not None else None)
    if cooldown_end is not None and now < cooldown_end:
        return wait(f"cooldown until {cooldown_end.isoformat()}",
                    wake_at=cooldown_end if new_data else None)
    trigger = RunTrigger.SCHEDULE if slot_due else RunTrigger.NEW_DATA
    why = (f"schedule slot {slot.isoformat()}" if slot_due and slot
           else f"new Dataset version {validated_version}")
    return Decision(trigger=trigger, why=why, handled_request=handled,
                    next_scheduled_time=next_slot, wake_at=next_slot)
