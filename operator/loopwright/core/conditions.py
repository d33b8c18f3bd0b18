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
from loopwright.api.reasons import STALLED as STALLED_REASONS

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
"""The two kstatus conditions (sigs.k8s.io/cli-utils/pkg/kstatus), derived from the others by
:func:`merge` so every kind publishes them the same way: Flux, kpt and ``kubectl wait`` read
Reconciling=True as InProgress and Stalled=True as Failed."""

IN_PROGRESS = frozenset({("Progressing", "True"), ("Training", "True"), ("Validated", "Unknown"),
                         ("ArtifactVerified", "Unknown"), ("CompiledVerified", "Unknown")})
"""(type, status) of the conditions saying a run, a canary, a profile or a verification is under way."""

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
    reorder the list (which would be a needless status write). Once there is a Ready
    condition, Stalled and Reconciling follow from the list (:func:`health`).
    """
    verdicts = list(verdicts)
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
    if find(result, READY) is not None and not {v.type for v in verdicts} & {RECONCILING, STALLED}:
        derived = health(result)
        if any(not _same(find(result, d.type), d) for d in derived):
            result = merge(result, derived, generation=generation, now=stamp)
    return result


def _same(condition: Mapping[str, Any] | None, verdict: Verdict) -> bool:
    return condition is not None and (condition.get("status"), condition.get("reason"),
                                      condition.get("message", "")) == (
        _status(verdict.status), verdict.reason, verdict.message)


def health(conditions: Sequence[Mapping[str, Any]]) -> list[Verdict]:
    """Reconciling and Stalled, from the conditions a controller published (kstatus' contract).

    Stalled: Ready=False or Degraded=True for a reason in :data:`STALLED_REASONS`. Reconciling:
    otherwise, a condition of :data:`IN_PROGRESS` holds, or Ready is not True. Neither: Ready
    is True and nothing is under way, which kstatus calls Current.
    """
    ready = find(conditions, READY)
    degraded = find(conditions, "Degraded")
    stuck = next((c for c in (ready, degraded) if c is not None
                  and c.get("status") == (ConditionStatus.FALSE if c is ready else ConditionStatus.TRUE)
                  and c.get("reason") in STALLED_REASONS), None)
    busy = None if stuck is not None else next(
        (c for c in conditions if (c.get("type"), c.get("status")) in IN_PROGRESS), None)
    if busy is None and stuck is None and ready is not None and ready.get("status") != ConditionStatus.TRUE:
        busy = ready
    return [
        Verdict(type=STALLED, status=stuck is not None, reason=stuck["reason"] if stuck else "NotStalled",
                message=stuck.get("message", "") if stuck else ""),
        Verdict(type=RECONCILING, status=busy is not None,
                reason=busy["reason"] if busy else "Converged",
                message=f"{busy['type']}: {busy.get('message', '')}" if busy else ""),
    ]


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
