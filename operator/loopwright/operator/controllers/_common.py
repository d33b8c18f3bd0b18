"""What every controller does around its real work: parse the spec, publish, follow its Jobs.

Controllers stay thin: read the object, call pure functions, hand the decision to the runtime's
status writer and event recorder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from loopwright.api._base import ApiModel, one_line
from loopwright.api.kinds import Kind
from loopwright.api.reasons import INVALID_SPEC, NOT_IMPLEMENTED
from loopwright.core.conditions import READY, Event, Verdict, merge
from loopwright.operator.runtime.client import PODS, Obj, Resource
from loopwright.operator.runtime.controller import Context
from loopwright.operator.runtime.status import Decision

__all__ = ["INVALID_SPEC", "NOT_IMPLEMENTED", "condition_changed", "job_pods", "now", "parse_spec",
           "publish", "ready_status", "stamp", "stub_status"]


def parse_spec(kind: Kind, spec: Mapping[str, Any]) -> ApiModel | str:
    """The spec as its model, or a one-line reason why it is invalid.

    The API server enforces the same rules through the CRD; this catches objects
    stored under an older CRD, or a server that skips CEL.
    """
    try:
        return kind.spec.model_validate(dict(spec))
    except ValidationError as exc:
        return one_line(exc, root="spec")


def ready_status(
    *,
    status: Mapping[str, Any] | None,
    generation: int | None,
    verdict: Verdict,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The status patch that publishes ``verdict`` as Ready for this generation."""
    conditions = merge((status or {}).get("conditions"), [verdict], generation=generation, now=now)
    return {"observedGeneration": generation, "conditions": conditions}


def stub_status(
    kind: Kind,
    *,
    spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    generation: int | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Status of a kind whose behaviour has not landed: honest Ready=False, never a fake success."""
    parsed = parse_spec(kind, spec)
    if isinstance(parsed, str):
        verdict = Verdict(type=READY, status=False, reason=INVALID_SPEC, message=parsed)
    else:
        verdict = Verdict(type=READY, status=False, reason=NOT_IMPLEMENTED,
                          message=f"The spec is valid, but this operator version does not act on "
                                  f"{kind.kind} objects yet: nothing is reconciled.")
    return ready_status(status=status, generation=generation, verdict=verdict, now=now)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition_changed(conditions: Any, verdict: Verdict) -> bool:
    """Whether publishing ``verdict`` changes its condition's status or reason (worth an Event)."""
    previous = next((c for c in conditions or () if c.get("type") == verdict.type), None)
    expected = ("True" if verdict.status is True else "False" if verdict.status is False
                else str(verdict.status))
    return previous is None or previous.get("status") != expected or previous.get("reason") != verdict.reason


async def publish(ctx: Context, res: Resource, obj: Mapping[str, Any], decision: Decision, *,
                  event: Event | None = None) -> Obj | None:
    """Write the decision; post ``event`` only when a condition changes status or reason, so a state
    that persists across reconciles (a failed profile, a missing source) is reported once."""
    before = (obj.get("status") or {}).get("conditions")
    written = await ctx.status.write(res, obj, decision)
    changed = any(condition_changed(before, v) for v in decision.verdicts)
    if event is not None and written is not None and changed:
        await ctx.events.record(obj, type_=event.type, reason=event.reason, message=event.message)
    return written


async def job_pods(ctx: Context, job: Mapping[str, Any]) -> Sequence[Obj]:
    """The pods of a Job (to learn how its containers ended)."""
    meta = job["metadata"]
    selector = f"batch.kubernetes.io/controller-uid={meta['uid']}"
    return await ctx.api.list(PODS, meta["namespace"], selector=selector)
