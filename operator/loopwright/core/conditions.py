"""Pure helpers for KEP-1623 conditions in the wire form kept in ``status.conditions``.

``lastTransitionTime`` changes only when a condition's status changes: clients use
it to tell how long something has been broken, so a reconcile that merely repeats
the verdict (or rewords the message) must keep it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopwright.api.common import Condition, ConditionStatus

READY = "Ready"

WireCondition = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Event:
    """A Kubernetes Event a reconcile decided to post on its object."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """A condition to publish, before timestamps and generations are attached."""

    type: str
    status: ConditionStatus | bool
    reason: str
    message: str = ""


def _status(value: ConditionStatus | bool) -> ConditionStatus:
    if isinstance(value, bool):
        return ConditionStatus.TRUE if value else ConditionStatus.FALSE
    return ConditionStatus(value)


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of ``type_``, if present."""
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == ConditionStatus.TRUE


def merge(
    conditions: Sequence[Mapping[str, Any]] | None,
    verdicts: Iterable[Verdict],
    *,
    generation: int | None,
    now: datetime | None = None,
) -> list[WireCondition]:
    """The conditions list after publishing ``verdicts``; other types are kept as they are.

    Existing order is kept and new types are appended, so repeated reconciles do not
    reorder the list (which would be a needless status write).
    """
    stamp = (now or datetime.now(UTC)).replace(microsecond=0)
    result = [dict(c) for c in conditions or ()]
    for verdict in verdicts:
        status = _status(verdict.status)
        previous = find(result, verdict.type)
        unchanged = previous is not None and previous.get("status") == status
        condition = Condition(
            type=verdict.type,
            status=status,
            reason=verdict.reason,
            message=verdict.message,
            observed_generation=generation,
            last_transition_time=previous["lastTransitionTime"] if unchanged and previous else stamp,
        ).to_wire()
        index = next((i for i, c in enumerate(result) if c.get("type") == verdict.type), None)
        if index is None:
            result.append(condition)
        else:
            result[index] = condition
    return result


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    type_: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str = "",
    generation: int | None,
    now: datetime | None = None,
) -> list[WireCondition]:
    """Shorthand for :func:`merge` with one verdict."""
    verdict = Verdict(type=type_, status=status, reason=reason, message=message)
    return merge(conditions, [verdict], generation=generation, now=now)
