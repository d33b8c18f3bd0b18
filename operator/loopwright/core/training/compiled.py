"""The compiled form of a ModelVersion: its verification verdict, and whether it may serve.

The verification Job compares the compiled model with the skops model on the hold-out rows
and reports ``{"compiled": {"passed", "rows", "agreeing", "maxProbaDifference", "message"}}``
in its summary. That becomes the ``compiled`` check and the ``CompiledVerified`` condition; a
Deployment serves the compiled artifact only while that condition is True, and the skops
artifact otherwise. A failed check never rejects the version itself: the skops model is fine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopwright.api.modelversion import Check
from loopwright.core.conditions import Verdict

COMPILED_VERIFIED = "CompiledVerified"
CHECK = "compiled"


def check(summary: Mapping[str, Any]) -> Check | None:
    """The ``compiled`` check from a verification Job's summary (None: nothing was compiled)."""
    result = summary.get(CHECK)
    if not isinstance(result, Mapping):
        return None
    rows, agreeing = result.get("rows"), result.get("agreeing")
    fraction = agreeing / rows if isinstance(rows, int) and isinstance(agreeing, int) and rows else None
    message = str(result.get("message") or "")
    return Check(name=CHECK, metric="agreement", value=fraction, threshold=1.0,
                 passed=result.get("passed") is True, message=message[:1024])


def verdict(compiled: Check) -> Verdict:
    """The ``CompiledVerified`` condition of a compiled check."""
    if compiled.passed:
        return Verdict(type=COMPILED_VERIFIED, status=True, reason="Identical",
                       message=f"the compiled model serves: {compiled.message}")
    return Verdict(type=COMPILED_VERIFIED, status=False, reason="CompiledRejected",
                   message=f"the compiled model is not served (the skops artifact is): {compiled.message}")


def servable(model_version: Mapping[str, Any]) -> tuple[str, str] | None:
    """The compiled artifact's URI and sha256, if the verification Job proved it; else None."""
    compiled = (model_version.get("spec") or {}).get("compiled")
    conditions = (model_version.get("status") or {}).get("conditions") or ()
    proved = any(c.get("type") == COMPILED_VERIFIED and c.get("status") == "True" for c in conditions)
    if not proved or not isinstance(compiled, Mapping):
        return None
    return str(compiled["uri"]), str(compiled["sha256"])
