"""The canary state machine: from what was observed to the next status and the workloads wanted.

Pure on purpose: the controller observes (the object, its ModelVersions, ready pods,
a finished analysis check), calls :func:`plan`, and applies the result. Everything
the machine remembers is in ``status`` (step, step start, failures, the analysis
window), so a restarted operator computes exactly what the stopped one would have.

Phases: Pending (nothing servable yet), Stable, Progressing (a canary at a step),
Paused (held by spec, by a step without pause, or waiting for a manual promotion),
Promoting (the canary is scaled to full size before the switch), RolledBack (the last
canary was rejected; stable serves), Failed (nothing can be served).

A step advances when its weight is reached, its pause has elapsed and a check run
after the pause passed; only failed checks count towards ``failureLimit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from loopwright.api.common import Condition, ConditionStatus, parse_duration
from loopwright.api.deployment import (
    LATEST,
    AnalysisResult,
    AnalysisStatus,
    CanaryStatus,
    DeploymentPhase,
    DeploymentSpec,
    DeploymentStatus,
    PodWindow,
    QueuedStatus,
    RolloutEvent,
    StableStatus,
    Verdict,
)
from loopwright.api.modelversion import ModelPhase
from loopwright.core import conditions
from loopwright.core.conditions import Event
from loopwright.core.rollout import queue, traffic

PROGRESSING = "Progressing"
DEGRADED = "Degraded"
HISTORY_LIMIT = 20
IDLE_SECONDS = 30.0
BUSY_SECONDS = 2.0


class Outcome(StrEnum):
    """What a finished rollout is recorded as in ``status.history``."""

    DEPLOYED = "Deployed"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"


@dataclass(frozen=True, kw_only=True)
class VersionInfo:
    """One ModelVersion of the model, as far as the rollout cares."""

    version: int
    name: str
    phase: ModelPhase | None


@dataclass(frozen=True, kw_only=True)
class Target:
    """The version the spec asks to serve, or why there is none (``version`` None)."""

    version: int | None
    name: str = ""
    problem: str = ""
    permanent: bool = False
    """Waiting cannot help (e.g. the pinned version was rejected by validation)."""


@dataclass(frozen=True, kw_only=True)
class Check:
    """An analysis check the controller ran because :func:`check_due` said so."""

    results: list[AnalysisResult]
    verdict: Verdict


@dataclass(frozen=True, kw_only=True)
class World:
    """Everything :func:`plan` needs, observed by the controller."""

    now: datetime
    generation: int
    spec: DeploymentSpec
    status: DeploymentStatus
    target: Target
    ready: Mapping[int, int]
    """Ready predictor pods per version."""
    window: Sequence[PodWindow] | None = None
    """The analysis window after this round's scrape (None: nothing scraped)."""
    check: Check | None = None
    route_weight: int | None = None
    """gatewayAPI mode: the canary percentage of an accepted HTTPRoute (None: not accepted)."""
    gateway: bool = False
    """Weights are HTTPRoute weights (gatewayAPI mode and the cluster serves HTTPRoutes)."""
    traffic_problem: str | None = None
    """Why the traffic mode asked for cannot be honoured (published as Degraded)."""
    servable: frozenset[int] | None = None
    """The model's Validated versions (None: not observed)."""


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One apps/v1 Deployment to keep, with its replicas (versions not listed are deleted)."""

    version: int
    model_version: str
    replicas: int


@dataclass(kw_only=True)
class Plan:
    """What the controller must make true."""

    status: DeploymentStatus
    workloads: list[Workload] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    alias: tuple[str | None, str] | None = None
    """Move the production alias: (previous ModelVersion or None, new ModelVersion)."""
    registry: list[tuple[str, str, str]] = field(default_factory=list)
    """(ModelVersion, Canary|Promoted|RolledBack|Retired, message) for its deployment history."""
    route: list[tuple[int, int]] | None = None
    """gatewayAPI mode: (version, weight) backends of the HTTPRoute."""
    wake_in: float = IDLE_SECONDS
    """Seconds until something is due (a check, a pause's end) or worth re-observing."""


def resolve(
    *, spec: DeploymentSpec, status: DeploymentStatus, generation: int, versions: Sequence[VersionInfo]
) -> Target:
    """Which version the spec asks for: the pinned one, or the newest Validated one not rejected here.

    ``spec.rollout.abort`` excludes its version. A pinned version rejected here is
    retried only once the spec changed after the rejection.
    """
    aborted = spec.rollout.abort.version if spec.rollout.abort else None
    rejected = set(status.rejected_versions)
    if spec.version == LATEST:
        candidates = [
            v
            for v in versions
            if v.phase == ModelPhase.VALIDATED and v.version not in rejected and v.version != aborted
        ]
        if not candidates:
            skipped = sorted(v.version for v in versions if v.phase == ModelPhase.VALIDATED)
            why = f" (validated but rejected or aborted here: {skipped})" if skipped else ""
            return Target(
                version=None, problem=f"no Validated ModelVersion of model {spec.model!r} to serve{why}"
            )
        best = max(candidates, key=lambda v: v.version)
        return Target(version=best.version, name=best.name)
    pinned = int(spec.version)
    found = next((v for v in versions if v.version == pinned), None)
    if found is None:
        return Target(
            version=None, problem=f"ModelVersion {spec.model} version {pinned} does not exist (yet)"
        )
    if found.phase in (ModelPhase.REJECTED, ModelPhase.FAILED):
        return Target(
            version=None,
            permanent=True,
            problem=f"ModelVersion {found.name} is {found.phase}: it cannot be served",
        )
    if found.phase != ModelPhase.VALIDATED:
        return Target(version=None, problem=f"ModelVersion {found.name} is not Validated yet")
    if pinned == aborted:
        return Target(version=None, problem=f"version {pinned} is aborted by spec.rollout.abort")
    if pinned in rejected and generation <= (status.rejected_generation or 0):
        return Target(
            version=None, problem=f"version {pinned} was rolled back here; change the spec to retry it"
        )
    return Target(version=pinned, name=found.name)


def check_due(*, spec: DeploymentSpec, status: DeploymentStatus, now: datetime) -> bool:
    """Whether an analysis check should run now (a canary is being judged and an interval passed)."""
    canary, analysis = status.canary, status.analysis
    if canary is None or status.phase == DeploymentPhase.PROMOTING or analysis is None:
        return False
    start = analysis.window_start or canary.step_start_time
    if start is None:
        return False
    last = analysis.last_time if analysis.last_time is not None and analysis.last_time >= start else start
    return now >= last + _interval(spec)


def needs_scrape(*, spec: DeploymentSpec, status: DeploymentStatus, now: datetime) -> bool:
    """A check is due, or the window has no baseline yet (a step just began)."""
    canary, analysis = status.canary, status.analysis
    if canary is None or status.phase == DeploymentPhase.PROMOTING or analysis is None:
        return False
    return not analysis.pods or check_due(spec=spec, status=status, now=now)


def plan(world: World) -> Plan:
    """The next status, the workloads to converge to, the events to post."""
    return _Planner(world).run()


def _interval(spec: DeploymentSpec) -> timedelta:
    return parse_duration(spec.rollout.analysis.interval)


def _merge(
    current: Sequence[Condition], verdicts: Sequence[conditions.Verdict], *, generation: int, now: datetime
) -> list[Condition]:
    wire = conditions.merge([c.to_wire() for c in current], verdicts, generation=generation, now=now)
    return [Condition.model_validate(c) for c in wire]


class _Planner:
    def __init__(self, world: World) -> None:
        self.w = world
        self.spec = world.spec
        self.status = world.status.model_copy(deep=True)
        self.plan = Plan(status=self.status)
        self.replicas = world.spec.replicas
        self.gateway = world.gateway
        self.rejected_now: int | None = None

    # -- helpers ------------------------------------------------------------------------------

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.plan.events.append(
            Event(type="Warning" if warning else "Normal", reason=reason, message=message)
        )

    def history(self, version: int, outcome: Outcome, message: str) -> None:
        entry = RolloutEvent(version=version, event=outcome, time=self.w.now, message=message[:1024])
        self.status.history = [entry, *self.status.history][:HISTORY_LIMIT]

    def ready(self, version: int) -> int:
        return self.w.ready.get(version, 0)

    def new_window(self, *, keep_failures: bool) -> None:
        previous = self.status.analysis
        self.status.analysis = AnalysisStatus(
            failures=previous.failures if previous is not None and keep_failures else 0,
            results=previous.results if previous is not None else [],
            window_start=self.w.now,
        )

    # -- the machine --------------------------------------------------------------------------

    def run(self) -> Plan:
        status, target = self.status, self.w.target
        if status.stable is None:
            if target.version is None:
                return self.nothing_to_serve()
            status.stable = StableStatus(version=target.version, model_version=target.name)
            self.event("Deployed", f"serving version {target.version} ({target.name}) as stable")
            self.history(target.version, Outcome.DEPLOYED, "first version, no canary needed")
            self.plan.alias = (None, target.name)
            self.plan.registry.append((target.name, "Promoted", "first version of this Deployment"))
        if status.canary is not None:
            self.continue_canary()
        if status.canary is None:
            self.status.queued = None
            self.maybe_start_canary()
        self.finish()
        return self.plan

    def nothing_to_serve(self) -> Plan:
        target = self.w.target
        self.status.phase = DeploymentPhase.FAILED if target.permanent else DeploymentPhase.PENDING
        self.status.conditions = _merge(
            self.status.conditions,
            [
                conditions.Verdict(
                    type=conditions.READY,
                    status=False,
                    reason="NotServable" if target.permanent else "NoVersion",
                    message=target.problem,
                ),
                conditions.Verdict(
                    type=PROGRESSING, status=False, reason="NoVersion", message=target.problem
                ),
                conditions.Verdict(
                    type=DEGRADED,
                    status=target.permanent,
                    reason="NotServable" if target.permanent else "NoVersion",
                    message=target.problem,
                ),
            ],
            generation=self.w.generation,
            now=self.w.now,
        )
        self.status.observed_generation = self.w.generation
        self.plan.wake_in = IDLE_SECONDS
        return self.plan

    def continue_canary(self) -> None:
        canary, target = self.status.canary, self.w.target
        assert canary is not None
        rollout = self.spec.rollout
        if rollout.abort is not None and rollout.abort.version == canary.version:
            self.reject(Outcome.ABORTED, f"version {canary.version} aborted by spec.rollout.abort")
            return
        decision = queue.on_target(spec=self.spec, canary=canary, target=target.version,
                                   problem=target.problem, servable=self.w.servable)
        if not decision.keep:
            why = decision.why
            self.event("CanarySuperseded", f"canary version {canary.version} dropped: {why}")
            self.history(canary.version, Outcome.SUPERSEDED, why)
            self.plan.registry.append((canary.model_version, "Retired", f"canary dropped: {why}"))
            self.status.canary = None
            self.status.analysis = None
            return
        self.queue(decision.queued)
        if self.status.phase == DeploymentPhase.PROMOTING:
            self.promote_when_ready()
            return
        if canary.weight_reached_time is None and self.ready(canary.version) >= canary.replicas:
            canary.weight_reached_time = self.w.now
        if rollout.promote is not None and rollout.promote.version == canary.version:
            self.begin_promotion(f"version {canary.version} promoted by spec.rollout.promote")
            return
        if self.judge():
            return
        self.maybe_advance()

    def queue(self, version: int | None) -> None:
        """Show the version waiting behind the canary (an Event when a new one joins)."""
        queued, canary = self.status.queued, self.status.canary
        assert canary is not None
        if version is None or version != self.w.target.version:
            self.status.queued = None
            return
        if queued is None or queued.version != version:
            self.status.queued = QueuedStatus(version=version, model_version=self.w.target.name,
                                              since=self.w.now)
            self.event("VersionQueued", f"version {version} waits for the canary of version "
                                        f"{canary.version} to finish (spec.rollout.onNewVersion Queue)")

    def judge(self) -> bool:
        """Record this round's window and check; True if the canary was rolled back."""
        canary, analysis = self.status.canary, self.status.analysis
        assert canary is not None
        if analysis is None:
            self.new_window(keep_failures=True)
            analysis = self.status.analysis
            assert analysis is not None
        if self.w.window is not None:
            analysis.pods = list(self.w.window)
        check = self.w.check
        if check is not None:
            analysis.last_time = self.w.now
            analysis.results = check.results
            analysis.verdict = check.verdict
            analysis.checks += 1
            if check.verdict == Verdict.FAIL:
                analysis.failures += 1
                failing = "; ".join(
                    f"{r.metric}: {r.message}" for r in check.results if r.verdict == Verdict.FAIL
                )
                limit = self.spec.rollout.analysis.failure_limit
                self.event(
                    "AnalysisFailed",
                    f"version {canary.version} step {canary.step + 1}: {failing} "
                    f"(failed checks {analysis.failures}, limit {limit})",
                    warning=True,
                )
                if analysis.failures > limit:
                    self.reject(Outcome.ROLLED_BACK, f"analysis failed {analysis.failures} times: {failing}")
                    return True
        deadline = parse_duration(self.spec.rollout.progress_deadline)
        started = canary.step_start_time or self.w.now
        if self.ready(canary.version) < canary.replicas and self.w.now - started > deadline:
            self.reject(
                Outcome.ROLLED_BACK,
                f"canary pods not ready after {self.spec.rollout.progress_deadline} "
                f"({self.ready(canary.version)}/{canary.replicas} ready)",
            )
            return True
        return False

    def maybe_advance(self) -> None:
        canary, analysis = self.status.canary, self.status.analysis
        assert canary is not None
        assert analysis is not None
        steps = self.spec.rollout.steps
        index = min(canary.step, len(steps) - 1)
        step = steps[index]
        if self.spec.rollout.paused or step.pause is None:
            self.status.phase = DeploymentPhase.PAUSED
            return
        if canary.weight_reached_time is None:
            self.status.phase = DeploymentPhase.PROGRESSING
            return
        # The pause holds the weight actually reached, not the time spent waiting for pods.
        pause_end = canary.weight_reached_time + parse_duration(step.pause)
        passed_after_pause = (
            analysis.verdict == Verdict.PASS
            and analysis.last_time is not None
            and analysis.last_time >= pause_end
        )
        if not passed_after_pause:
            self.status.phase = DeploymentPhase.PROGRESSING
            return
        if index + 1 < len(steps):
            self.enter_step(index + 1)
        elif self.spec.rollout.auto_promote:
            self.begin_promotion(f"version {canary.version} passed all {len(steps)} steps")
        else:
            self.status.phase = DeploymentPhase.PAUSED

    def maybe_start_canary(self) -> None:
        target, stable = self.w.target, self.status.stable
        assert stable is not None
        # The target was resolved before this round rejected its canary: never restart it at once.
        if target.version is None or target.version in (stable.version, self.rejected_now):
            return
        if self.spec.rollout.paused:
            self.status.phase = DeploymentPhase.PAUSED
            return
        self.status.rejected_versions = [v for v in self.status.rejected_versions if v != target.version]
        self.status.canary = CanaryStatus(version=target.version, model_version=target.name)
        self.status.analysis = None
        self.new_window(keep_failures=False)
        self.plan.registry.append((target.name, "Canary", f"canary against version {stable.version}"))
        self.enter_step(0)

    def enter_step(self, index: int) -> None:
        canary = self.status.canary
        assert canary is not None
        weight = self.spec.rollout.steps[index].weight
        canary.step = index
        canary.desired_weight = weight
        canary.step_start_time = self.w.now
        canary.weight_reached_time = None
        canary.replicas = self.canary_replicas(weight)
        self.new_window(keep_failures=True)
        self.status.phase = DeploymentPhase.PROGRESSING
        steps = len(self.spec.rollout.steps)
        self.event(
            "CanaryStep",
            f"version {canary.version} at step {index + 1}/{steps}: weight {weight}% "
            f"({canary.replicas} canary pods)",
        )

    def canary_replicas(self, weight: int) -> int:
        if self.gateway:
            return traffic.gateway_canary_replicas(weight=weight, replicas=self.replicas)
        return traffic.replica_split(weight=weight, replicas=self.replicas).canary

    def begin_promotion(self, why: str) -> None:
        canary = self.status.canary
        assert canary is not None
        self.status.phase = DeploymentPhase.PROMOTING
        canary.desired_weight = 100
        canary.replicas = max(self.replicas, 1)
        canary.step_start_time = self.w.now  # the progress deadline applies to scaling up, too
        self.event("Promoting", f"{why}: scaling it to {canary.replicas} pods before the switch")
        self.promote_when_ready()

    def promote_when_ready(self) -> None:
        canary, stable = self.status.canary, self.status.stable
        assert canary is not None
        assert stable is not None
        if self.ready(canary.version) < canary.replicas:
            started = canary.step_start_time or self.w.now
            if self.w.now - started > parse_duration(self.spec.rollout.progress_deadline):
                self.reject(
                    Outcome.ROLLED_BACK,
                    f"canary not scaled up after {self.spec.rollout.progress_deadline} "
                    f"({self.ready(canary.version)}/{canary.replicas} ready)",
                )
            return
        message = f"version {canary.version} promoted, replacing version {stable.version}"
        self.event("Promoted", message)
        self.history(canary.version, Outcome.PROMOTED, message)
        self.plan.alias = (stable.model_version, canary.model_version)
        self.plan.registry += [
            (canary.model_version, "Promoted", message),
            (stable.model_version, "Retired", f"replaced by version {canary.version}"),
        ]
        self.status.stable = StableStatus(version=canary.version, model_version=canary.model_version)
        self.status.canary = None
        self.status.analysis = None
        self.status.phase = DeploymentPhase.STABLE

    def reject(self, outcome: Outcome, message: str) -> None:
        canary = self.status.canary
        assert canary is not None
        self.status.rejected_versions = [
            *[v for v in self.status.rejected_versions if v != canary.version],
            canary.version,
        ][-100:]
        self.status.rejected_generation = self.w.generation
        self.rejected_now = canary.version
        self.history(canary.version, outcome, message)
        self.event(
            str(outcome),
            f"version {canary.version} rejected, all traffic back to stable: {message}",
            warning=True,
        )
        self.plan.registry.append((canary.model_version, "RolledBack", message))
        self.status.canary = None
        if self.status.analysis is not None:
            self.status.analysis.pods = []
        self.status.phase = DeploymentPhase.ROLLED_BACK

    # -- status, workloads, timing ----------------------------------------------------------------

    def finish(self) -> None:
        status, stable, canary = self.status, self.status.stable, self.status.canary
        assert stable is not None
        stable_ready = self.ready(stable.version)
        if canary is None:
            # RolledBack tells the story until the spec changes or the next rollout starts.
            keep = (
                status.phase == DeploymentPhase.ROLLED_BACK
                and status.rejected_generation == self.w.generation
            ) or (status.phase == DeploymentPhase.PAUSED and self.spec.rollout.paused)
            if not keep:
                status.phase = DeploymentPhase.STABLE
            stable.replicas = self.replicas
            stable.desired_weight = 100
            stable.weight = 100 if stable_ready else 0
            self.plan.workloads = [
                Workload(version=stable.version, model_version=stable.model_version, replicas=self.replicas)
            ]
            self.plan.route = [(stable.version, 100)] if self.gateway else None
        else:
            canary_ready = self.ready(canary.version)
            if self.gateway:
                stable.replicas = self.replicas
                weight = (
                    canary.desired_weight
                    if status.phase != DeploymentPhase.PROMOTING
                    else (self.spec.rollout.steps[canary.step].weight)
                )
                self.plan.route = [(stable.version, 100 - weight), (canary.version, weight)]
                canary.weight = self.w.route_weight if self.w.route_weight is not None else 0
            else:
                split = traffic.replica_split(weight=canary.desired_weight, replicas=self.replicas)
                stable.replicas = self.replicas if status.phase == DeploymentPhase.PROMOTING else split.stable
                canary.weight = traffic.actual_weight(canary_ready=canary_ready, stable_ready=stable_ready)
            canary.ready_replicas = canary_ready
            stable.desired_weight = 100 - canary.desired_weight
            stable.weight = 100 - canary.weight if stable_ready else 0
            self.plan.workloads = [
                Workload(
                    version=stable.version, model_version=stable.model_version, replicas=stable.replicas
                ),
                Workload(
                    version=canary.version, model_version=canary.model_version, replicas=canary.replicas
                ),
            ]
        stable.ready_replicas = stable_ready
        status.conditions = _merge(
            status.conditions, self.verdicts(), generation=self.w.generation, now=self.w.now
        )
        status.observed_generation = self.w.generation
        self.plan.wake_in = self.wake_in()

    def verdicts(self) -> list[conditions.Verdict]:
        status, stable, canary = self.status, self.status.stable, self.status.canary
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
            reasons = {DeploymentPhase.PROMOTING: "Promoting", DeploymentPhase.PAUSED: self.paused_reason()}
            reason = reasons.get(status.phase or DeploymentPhase.PROGRESSING, "CanaryStep")
            steps = len(self.spec.rollout.steps)
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
            message = self.w.target.problem or f"version {stable.version} is the newest to serve"
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
        elif self.w.traffic_problem:
            out.append(
                conditions.Verdict(
                    type=DEGRADED, status=True, reason="GatewayAPIUnavailable", message=self.w.traffic_problem
                )
            )
        else:
            out.append(conditions.Verdict(type=DEGRADED, status=ConditionStatus.FALSE, reason="AsExpected"))
        return out

    def paused_reason(self) -> str:
        # Paused without spec.rollout.paused: a step without pause, or the last step passed
        # with autoPromote off; either way spec.rollout.promote moves it on.
        return "PausedBySpec" if self.spec.rollout.paused else "WaitingForPromotion"

    def wake_in(self) -> float:
        status, canary = self.status, self.status.canary
        stable = status.stable
        assert stable is not None
        if canary is None:
            return BUSY_SECONDS if stable.ready_replicas < stable.replicas else IDLE_SECONDS
        if status.phase == DeploymentPhase.PROMOTING or canary.ready_replicas < canary.replicas:
            return min(BUSY_SECONDS, _interval(self.spec).total_seconds())
        analysis = status.analysis
        start = analysis.window_start if analysis is not None and analysis.window_start else self.w.now
        last = start
        if analysis is not None and analysis.last_time is not None and analysis.last_time >= start:
            last = analysis.last_time
        due = (last + _interval(self.spec) - self.w.now).total_seconds()
        if analysis is not None and not analysis.pods:
            due = 0.0
        return max(0.2, min(due, IDLE_SECONDS))
