"""When the canary needs a look: an analysis check due, a window without baseline, the next round.

Pure: the controller asks :func:`needs_scrape` and :func:`check_due` before a round, and the planner
asks :func:`wake_in` after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from loopwright.api.common import parse_duration
from loopwright.api.deployment import DeploymentPhase, DeploymentSpec, DeploymentStatus

IDLE_SECONDS = 30.0
BUSY_SECONDS = 2.0


def interval(spec: DeploymentSpec) -> timedelta:
    """Time between two analysis checks."""
    return parse_duration(spec.rollout.analysis.interval)


def check_due(*, spec: DeploymentSpec, status: DeploymentStatus, now: datetime) -> bool:
    """Whether an analysis check should run now (a canary is being judged and an interval passed)."""
    canary, analysis = status.canary, status.analysis
    if canary is None or status.phase == DeploymentPhase.PROMOTING or analysis is None:
        return False
    start = analysis.window_start or canary.step_start_time
    if start is None:
        return False
    last = analysis.last_time if analysis.last_time is not None and analysis.last_time >= start else start
    return now >= last + interval(spec)


def needs_scrape(*, spec: DeploymentSpec, status: DeploymentStatus, now: datetime) -> bool:
    """A check is due, or the window has no baseline yet (a step just began)."""
    canary, analysis = status.canary, status.analysis
    if canary is None or status.phase == DeploymentPhase.PROMOTING or analysis is None:
        return False
    return not analysis.pods or check_due(spec=spec, status=status, now=now)


def wake_in(*, spec: DeploymentSpec, status: DeploymentStatus, now: datetime) -> float:
    """Seconds until something is due (a check, a pause's end) or worth re-observing."""
    canary = status.canary
    stable = status.stable
    assert stable is not None
    if canary is None:
        return BUSY_SECONDS if stable.ready_replicas < stable.replicas else IDLE_SECONDS
    if status.phase == DeploymentPhase.PROMOTING or canary.ready_replicas < canary.replicas:
        return min(BUSY_SECONDS, interval(spec).total_seconds())
    analysis = status.analysis
    start = analysis.window_start if analysis is not None and analysis.window_start else now
    last = start
    if analysis is not None and analysis.last_time is not None and analysis.last_time >= start:
        last = analysis.last_time
    due = (last + interval(spec) - now).total_seconds()
    if analysis is not None and not analysis.pods:
        due = 0.0
    return max(0.2, min(due, IDLE_SECONDS))
