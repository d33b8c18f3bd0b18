"""What every controller does around its real work: parse the spec, publish Ready.

Handlers stay thin: read the object, call pure functions, patch the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from loopwright.api._base import ApiModel, one_line
from loopwright.api.kinds import Kind
from loopwright.core.conditions import READY, Verdict, merge

NOT_IMPLEMENTED = "NotImplemented"
INVALID_SPEC = "InvalidSpec"


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
