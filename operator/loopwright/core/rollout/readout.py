"""The conditions a Deployment publishes after a round: Ready, Progressing, Degraded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from loopwright.api.common import Condition, ConditionStatus
from loopwright.api.deployment import DeploymentPhase, DeploymentSpec, DeploymentStatus
from loopwright.api.reasons import MODEL_VERSION_MISSING
from loopwright.core import conditions

PROGRESSING = "Progressing"
DEGRADED = "Degraded"


def verdicts(
    *, spec: DeploymentSpec, status: DeploymentStatus, target_problem: str, traffic_problem: str | None,
    stable_registered: bool = True,
) -> list[conditions.Verdict]:
    """Ready, Progressing and Degraded after a round. ``stable_registered``: the stable version's
    ModelVersion still exists and is Validated (a user may delete it while it serves)."""
    stable, canary = status.stable, status.canary
    assert stable is not None
    ready = stable.ready_replicas
    wanted = stable.replicas
    serving = ready > 0 or wanted == 0
    out = [
        conditions.Verdict(
            type=conditions.READY,
            status=serving,
            reason="Serving" if serving else "Unavailable",
            message=f"version {stable.version}: {ready}/{wanted} pods ready",
        )
    ]
    if canary is not None:
        analysis = status.analysis
        detail = ""
        if analysis is not None and analysis.verdict is not None:
            detail = f"; last check {analysis.verdict}: " + "; ".join(
                f"{r.metric} {r.verdict}" for r in analysis.results
            )
        reasons = {DeploymentPhase.PROMOTING: "Promoting", DeploymentPhase.PAUSED: paused_reason(spec)}
        reason = reasons.get(status.phase or DeploymentPhase.PROGRESSING, "CanaryStep")
        steps = len(spec.rollout.steps)
        out.append(
            conditions.Verdict(
                type=PROGRESSING,
                status=True,
                reason=reason,
                message=f"version {canary.version} at step {canary.step + 1}/{steps}"
                f", weight {canary.weight}% (desired {canary.desired_weight}%){detail}",
            )
        )
    else:
        reason = "Paused" if status.phase == DeploymentPhase.PAUSED else "NoCanary"
        message = target_problem or f"version {stable.version} is the newest to serve"
        out.append(conditions.Verdict(type=PROGRESSING, status=False, reason=reason, message=message))
    if status.phase == DeploymentPhase.ROLLED_BACK and status.history:
        last = status.history[0]
        out.append(
            conditions.Verdict(
                type=DEGRADED,
                status=True,
                reason=str(last.event),
                message=f"version {last.version}: {last.message}",
            )
        )
    elif ready < wanted:
        out.append(
            conditions.Verdict(
                type=DEGRADED,
                status=True,
                reason="Unavailable",
                message=f"stable version {stable.version}: {ready}/{wanted} pods ready",
            )
        )
    elif not stable_registered:
        out.append(
            conditions.Verdict(
                type=DEGRADED,
                status=True,
                reason=MODEL_VERSION_MISSING,
                message=f"stable version {stable.version}: ModelVersion {stable.model_version} was deleted "
                "or is no longer Validated; its pods keep serving the sha256-pinned artifact they were "
                "given, but the registry no longer vouches for it (register it again, or serve another)",
            )
        )
    elif traffic_problem:
        out.append(
            conditions.Verdict(
                type=DEGRADED, status=True, reason="GatewayAPIUnavailable", message=traffic_problem
            )
        )
    else:
        out.append(conditions.Verdict(type=DEGRADED, status=ConditionStatus.FALSE, reason="AsExpected"))
    return out

def paused_reason(spec: DeploymentSpec) -> str:
    # Paused without spec.rollout.paused: a step without pause, or the last step passed
    # with autoPromote off; either way spec.rollout.promote moves it on.
    return "PausedBySpec" if spec.rollout.paused else "WaitingForPromotion"


def unservable(problem: str, *, permanent: bool) -> list[conditions.Verdict]:
    """The conditions when the spec resolves to no version (``permanent``: waiting cannot help)."""
    reason = "NotServable" if permanent else "NoVersion"
    return [
        conditions.Verdict(type=conditions.READY, status=False, reason=reason, message=problem),
        conditions.Verdict(type=PROGRESSING, status=False, reason="NoVersion", message=problem),
        conditions.Verdict(type=DEGRADED, status=permanent, reason=reason, message=problem),
    ]


def merge(
    current: Sequence[Condition], verdicts: Sequence[conditions.Verdict], *, generation: int, now: datetime
) -> list[Condition]:
    """The status' conditions with ``verdicts`` merged in (KEP-1623 transition times kept)."""
    wire = conditions.merge([c.to_wire() for c in current], verdicts, generation=generation, now=now)
    return [Condition.model_validate(c) for c in wire]
