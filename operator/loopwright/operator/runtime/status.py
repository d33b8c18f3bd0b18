"""The one status writer: optimistic on ``resourceVersion``, merging on conflict (CloudNativePG's
``PatchWithOptimisticLock``).

A reconcile hands over what it decided, a :class:`Decision`: status fields (``None`` deletes one)
and verdicts (conditions). The writer patches the status of the object the reconcile read,
guarded by its ``resourceVersion``. On 409 it re-reads, and, while the generation is the same,
applies the same decision onto the fresh status (the verdicts merged into the fresh conditions,
so a condition written in between by someone else survives); a newer generation drops the write,
since the reconcile judged a spec that is gone and the next one judges the new. A decision that
changes nothing costs no request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any

from loopwright.core.conditions import READY, Verdict, merge
from loopwright.operator.runtime.client import ApiError, Client, Obj, Resource

ATTEMPTS = 5


class Conflict(Exception):  # noqa: N818 (what it is: the object changed)
    """The object kept changing under the write (or the caller asked to decide again on a 409)."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What one reconcile decided about its object's status."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    verdicts: Sequence[Verdict] = ()
    replace: bool = False
    """The fields are the whole status (besides conditions and observedGeneration): keys stored but
    not decided are deleted."""
    initial_ready: Verdict | None = None
    """Published as Ready when the object has no Ready condition yet (and no verdict is about Ready)."""


def patch_of(current: Mapping[str, Any], decision: Decision, *, generation: int | None,
             now: datetime | None = None) -> dict[str, Any]:
    """The merge patch that applies ``decision`` to the status ``current`` (empty: nothing changes)."""
    verdicts = list(decision.verdicts)
    if decision.initial_ready is not None and not any(v.type == READY for v in verdicts) \
            and not any(c.get("type") == READY for c in current.get("conditions") or ()):
        verdicts.append(decision.initial_ready)
    wanted: dict[str, Any] = dict(decision.fields)
    if decision.replace:
        kept = {"conditions", "observedGeneration"}
        wanted = {**{k: None for k in current if k not in wanted and k not in kept}, **wanted}
    wanted["observedGeneration"] = generation
    wanted["conditions"] = merge(current.get("conditions"), verdicts, generation=generation, now=now)
    return {k: v for k, v in wanted.items() if without_nulls(current.get(k)) != without_nulls(v)}


def without_nulls(value: Any) -> Any:
    """A value as a merge patch leaves it: nulls at any depth are absent keys."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


class StatusWriter:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def write(self, res: Resource, obj: Mapping[str, Any], decision: Decision, *,
                    merge_on_conflict: bool = True) -> Obj | None:
        """Publish ``decision`` on ``obj``; the object as written (``obj`` itself if nothing changed),
        or None when the write was dropped (the object is gone or has a newer generation).

        ``merge_on_conflict=False`` raises :class:`Conflict` on a 409 instead, for a reconcile whose
        decision depends on the status it read (it decides again on a fresh read).
        """
        generation = obj["metadata"].get("generation")
        current: Mapping[str, Any] | None = obj
        for _ in range(ATTEMPTS):
            if current is None or current["metadata"].get("generation") != generation \
                    or current["metadata"].get("deletionTimestamp"):
                return None
            patch = patch_of(current.get("status") or {}, decision, generation=generation)
            if not patch:
                return dict(current)
            meta = current["metadata"]
            try:
                return await self.client.patch_status(
                    res, meta["namespace"], meta["name"],
                    {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch})
            except ApiError as exc:
                if exc.status == HTTPStatus.NOT_FOUND:
                    return None
                if exc.status != HTTPStatus.CONFLICT:
                    raise
                if not merge_on_conflict:
                    raise Conflict(f"{res.kind} {meta['namespace']}/{meta['name']} changed") from exc
            current = await self.client.get(res, meta["namespace"], meta["name"])
        raise Conflict(f"{res.kind} {obj['metadata']['name']}: kept changing while publishing its status")
