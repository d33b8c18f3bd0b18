"""kstatus' status computation for a custom resource, as sigs.k8s.io/cli-utils/pkg/kstatus/status
computes it (``Compute``: ``checkGenericProperties``, then ``checkReadyCondition``, then Current).

The rule table, in kstatus' order; the first rule that decides wins:

1. ``metadata.deletionTimestamp`` set → Terminating.
2. ``metadata.generation`` and ``status.observedGeneration`` both present and different →
   InProgress (LatestGenerationNotObserved). An absent observedGeneration skips the rule.
3. The first condition, in list order, that is ``Reconciling=True`` → InProgress, or
   ``Stalled=True`` → Failed.
4. (Built-in kinds only: not ours.)
5. A ``Ready`` condition: True → Current; False or Unknown → InProgress.
6. Otherwise → Current.

Flux (``wait: true``), kpt and cli-utils' status poller decide with exactly this; what Argo CD
shows comes from the Lua in manifests/argocd, checked against this table in the unit tests.
"""

from __future__ import annotations

from typing import Any, NamedTuple

TERMINATING = "Terminating"
IN_PROGRESS = "InProgress"
FAILED = "Failed"
CURRENT = "Current"


class Result(NamedTuple):
    status: str
    message: str


def compute(obj: dict[str, Any]) -> Result:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Result(TERMINATING, "Resource scheduled for deletion")
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return Result(IN_PROGRESS, f"generation is {generation}, latest observed generation is {observed}")
    conditions = status.get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return Result(IN_PROGRESS, cond.get("message", ""))
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return Result(FAILED, cond.get("message", ""))
    for cond in conditions:
        if cond.get("type") != "Ready":
            continue
        if cond.get("status") == "True":
            return Result(CURRENT, "Resource is Ready")
        if cond.get("status") in ("False", "Unknown"):
            return Result(IN_PROGRESS, cond.get("message", ""))
    return Result(CURRENT, "Resource is current")
