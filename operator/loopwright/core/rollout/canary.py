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
after the pause passed; only failed checks count towards ``failureLimit``. A newer
version arriving during a canary is queued behind it (:mod:`.queue`).
"""

from __future__ import annotations

from loopwright.api.common import parse_duration
from loopwright.api.deployment import (
    AnalysisStatus,
    CanaryStatus,
    DeploymentPhase,
    QueuedStatus,
    RolloutEvent,
    StableStatus,
    Verdict,
)
from loopwright.core.conditions import Event
from loopwright.core.rollout import queue, traffic
from loopwright.core.rollout.readout import merge, unservable, verdicts
from loopwright.core.rollout.target import Target, VersionInfo, resolve
from loopwright.core.rollout.timing import IDLE_SECONDS, check_due, needs_scrape, wake_in
from loopwright.core.rollout.world import Check, Outcome, Plan, Workload, World

__all__ = ["Check", "Outcome", "Plan", "Target", "VersionInfo", "Workload", "World", "check_due",
           "needs_scrape", "plan", "resolve"]
"""The planner, and what the controller uses with it from .world, .target and .timing."""

HISTORY_LIMIT = 20


def plan(world: World) -> Plan:
    """The next status, the workloads to converge to, the events to post."""
    return _Planner(world).run()


class _Planner:
    def __init__(self, world: World) -> None:
        self.w = world
        self.spec = world.spec
        self.status = world.status.model_copy(deep=True)
        self.plan = Plan(status=self.status)
        auto = world.spec.autoscaling
        self.autoscaled = auto is not None
        self.replicas = (world.spec.replicas if auto is None
                         else world.stable_size if world.stable_size is not None else auto.min_replicas)
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
        self.status.conditions = merge(self.status.conditions,
                                       unservable(target.problem, permanent=target.permanent),
                                       generation=self.w.generation, now=self.w.now)
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
        # An autoscaled canary grows with the stable after its weight was reached: not a stuck step.
        stuck = canary.weight_reached_time is None or not self.autoscaled
        if stuck and self.ready(canary.version) < canary.replicas and self.w.now - started > deadline:
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
        if self.spec.autoscaling is not None:
            return traffic.autoscaled_split(weight=weight, stable=self.replicas, gateway=self.gateway,
                                            maximum=self.spec.autoscaling.max_replicas).canary
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
            self.plan.workloads = [Workload(version=stable.version, model_version=stable.model_version,
                                            replicas=self.replicas, autoscaled=self.autoscaled)]
            self.plan.route = [(stable.version, 100)] if self.gateway else None
        else:
            canary_ready = self.ready(canary.version)
            if self.autoscaled:  # the canary follows the size the autoscaler gives the stable
                promoting = status.phase == DeploymentPhase.PROMOTING
                canary.replicas = self.canary_replicas(100 if promoting else canary.desired_weight)
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
                keep = self.autoscaled or status.phase == DeploymentPhase.PROMOTING
                stable.replicas = self.replicas if keep else split.stable
                canary.weight = traffic.actual_weight(canary_ready=canary_ready, stable_ready=stable_ready)
            canary.ready_replicas = canary_ready
            stable.desired_weight = 100 - canary.desired_weight
            stable.weight = 100 - canary.weight if stable_ready else 0
            self.plan.workloads = [
                Workload(version=stable.version, model_version=stable.model_version, replicas=stable.replicas,
                         autoscaled=self.autoscaled),
                Workload(
                    version=canary.version, model_version=canary.model_version, replicas=canary.replicas
                ),
            ]
        stable.ready_replicas = stable_ready
        status.replicas = sum(w.replicas for w in self.plan.workloads)
        servable = self.w.servable
        published = verdicts(spec=self.spec, status=status, target_problem=self.w.target.problem,
                             traffic_problem=self.w.traffic_problem,
                             stable_registered=servable is None or stable.version in servable)
        status.conditions = merge(status.conditions, published, generation=self.w.generation, now=self.w.now)
        status.observed_generation = self.w.generation
        self.plan.wake_in = wake_in(spec=self.spec, status=self.status, now=self.w.now)
