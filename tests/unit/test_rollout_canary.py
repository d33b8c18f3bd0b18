"""The canary state machine, driven through whole rollouts with a fake clock (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopwright.api.deployment import (
    AnalysisResult,
    DeploymentPhase,
    DeploymentSpec,
    DeploymentStatus,
    Verdict,
)
from loopwright.api.modelversion import ModelPhase
from loopwright.core.conditions import Event
from loopwright.core.rollout import canary
from loopwright.core.rollout.canary import Check, Plan, Target, VersionInfo, World

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(**rollout: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "steps": [{"weight": 10, "pause": "10s"}, {"weight": 50, "pause": "10s"}],
        "analysis": {"interval": "2s", "failureLimit": 1, "minRequests": 5},
    }
    base.update(rollout)
    return DeploymentSpec.model_validate({"model": "iris", "replicas": 2, "rollout": base})


def _check(verdict: Verdict) -> Check:
    result = AnalysisResult(
        metric="errorRate",
        value=0.5 if verdict == Verdict.FAIL else 0.0,
        threshold=0.01,
        verdict=verdict,
        message="test",
    )
    return Check(results=[result], verdict=verdict)


class Driver:
    """Applies plans to a status as the controller would, with pods that become ready at once."""

    def __init__(self, spec: DeploymentSpec, *, generation: int = 1) -> None:
        self.spec = spec
        self.generation = generation
        self.status = DeploymentStatus()
        self.now = T0
        self.pods: dict[int, int] = {}
        self.events: list[Event] = []

    def step(
        self,
        target: int | None,
        *,
        check: Verdict | None = None,
        advance: float = 0.0,
        ready: dict[int, int] | None = None,
        servable: frozenset[int] | None = None,
    ) -> Plan:
        self.now += timedelta(seconds=advance)
        world = World(
            now=self.now,
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            target=Target(version=target, name=f"iris-v{target}")
            if target
            else Target(version=None, problem="none"),
            ready=self.pods if ready is None else ready,
            check=_check(check) if check is not None else None,
            servable=servable,
        )
        plan = canary.plan(world)
        # The status makes a round trip through its wire form, as it does through the API server.
        self.status = DeploymentStatus.model_validate(plan.status.to_wire())
        self.pods = {w.version: w.replicas for w in plan.workloads}
        self.events += plan.events
        return plan

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def test_first_version_goes_straight_to_stable_and_gets_the_alias() -> None:
    d = Driver(_spec())
    plan = d.step(1, ready={})
    assert d.status.phase == DeploymentPhase.STABLE
    assert d.status.stable is not None
    assert d.status.stable.version == 1
    assert d.status.canary is None
    assert plan.alias == (None, "iris-v1")
    assert [(w.version, w.replicas) for w in plan.workloads] == [(1, 2)]
    ready = {c.type: c for c in d.status.conditions}["Ready"]
    assert ready.status == "False"  # no pod ready yet: not serving
    d.step(1)
    assert {c.type: c.status for c in d.status.conditions}["Ready"] == "True"
    assert d.status.stable.weight == 100


def test_a_deleted_served_model_version_is_degraded_while_its_pods_keep_serving() -> None:
    d = Driver(_spec())
    d.step(1, ready={})
    d.step(1, servable=frozenset({1}))
    assert {c.type: c.reason for c in d.status.conditions}["Degraded"] == "AsExpected"
    plan = d.step(None, servable=frozenset())  # `kubectl delete modelversion iris-v1`
    conditions = {c.type: c for c in d.status.conditions}
    assert (conditions["Ready"].status, conditions["Degraded"].status) == ("True", "True")
    assert conditions["Degraded"].reason == "ModelVersionMissing"
    assert "iris-v1" in conditions["Degraded"].message
    assert [(w.version, w.replicas) for w in plan.workloads] == [(1, 2)]  # nothing is torn down


def test_nothing_to_serve_is_pending_or_failed() -> None:
    d = Driver(_spec())
    d.step(None)
    assert d.status.phase == DeploymentPhase.PENDING
    world = World(
        now=T0,
        generation=1,
        spec=d.spec,
        status=DeploymentStatus(),
        ready={},
        target=Target(version=None, problem="rejected by validation", permanent=True),
    )
    assert canary.plan(world).status.phase == DeploymentPhase.FAILED


def _to_canary(d: Driver) -> None:
    """Version 1 stable, version 2 at step 0 with its pods ready (the pause counts from there)."""
    d.step(1)
    d.step(1)
    d.step(2)
    d.step(2)


def test_a_new_version_goes_through_every_step_and_is_promoted() -> None:
    d = Driver(_spec())
    _to_canary(d)
    assert d.status.phase == DeploymentPhase.PROGRESSING
    c = d.status.canary
    assert c is not None
    assert (c.version, c.step, c.desired_weight, c.replicas) == (2, 0, 10, 1)
    # Two stable pods and one canary pod: 33% of the endpoints, reported as such.
    d.step(2)
    assert d.status.canary is not None
    assert d.status.canary.weight == 33
    assert d.status.stable is not None
    assert d.status.stable.weight == 67

    # A pass before the pause ended does not advance the step.
    d.step(2, check=Verdict.PASS, advance=4)
    assert d.status.canary is not None
    assert d.status.canary.step == 0
    # A pass after the pause does.
    d.step(2, check=Verdict.PASS, advance=7)
    assert d.status.canary is not None
    assert (d.status.canary.step, d.status.canary.desired_weight) == (1, 50)
    assert d.status.analysis is not None
    assert d.status.analysis.checks == 0  # a fresh window for the new step
    d.step(2)
    assert d.status.canary is not None
    assert d.status.canary.weight == 50

    # At 50% the canary already runs the full two pods, so the promotion completes at once.
    plan = d.step(2, check=Verdict.PASS, advance=11)
    assert d.status.phase == DeploymentPhase.STABLE
    assert d.status.stable is not None
    assert d.status.stable.version == 2
    assert d.status.canary is None
    assert plan.alias == ("iris-v1", "iris-v2")
    assert [(w.version, w.replicas) for w in plan.workloads] == [(2, 2)]
    assert d.reasons() == ["Deployed", "CanaryStep", "CanaryStep", "Promoting", "Promoted"]
    assert [h.event for h in d.status.history] == ["Promoted", "Deployed"]


def test_promotion_waits_for_the_canary_to_reach_full_size() -> None:
    d = Driver(_spec(steps=[{"weight": 10, "pause": "1s"}]))
    _to_canary(d)
    d.step(2, check=Verdict.PASS, advance=2)
    assert d.status.phase == DeploymentPhase.PROMOTING
    assert d.status.canary is not None
    assert d.status.canary.replicas == 2
    plan = d.step(2, ready={1: 2, 2: 1}, advance=1)
    assert d.status.phase == DeploymentPhase.PROMOTING
    assert {(w.version, w.replicas) for w in plan.workloads} == {(1, 2), (2, 2)}
    plan = d.step(2, ready={1: 2, 2: 2}, advance=1)
    assert d.status.phase == DeploymentPhase.STABLE
    assert plan.alias == ("iris-v1", "iris-v2")


def test_failed_checks_beyond_the_limit_roll_back_and_reject() -> None:
    d = Driver(_spec())
    _to_canary(d)
    d.step(2, check=Verdict.FAIL, advance=2)
    assert d.status.canary is not None  # failureLimit 1 tolerates one failure
    assert d.status.analysis is not None
    assert d.status.analysis.failures == 1
    plan = d.step(2, check=Verdict.FAIL, advance=2)
    assert d.status.phase == DeploymentPhase.ROLLED_BACK
    assert d.status.canary is None
    assert d.status.rejected_versions == [2]
    assert d.status.rejected_generation == 1
    assert [(w.version, w.replicas) for w in plan.workloads] == [(1, 2)]
    assert plan.events[-1].type == "Warning"
    assert "errorRate" in plan.events[-1].message
    assert d.status.history[0].event == "RolledBack"
    degraded = {c.type: c for c in d.status.conditions}["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "RolledBack")
    assert ("iris-v2", "RolledBack") in [(n, e) for n, e, _ in plan.registry]
    # The phase keeps telling the story while nothing else happens.
    d.step(1, advance=30)
    assert d.status.phase == DeploymentPhase.ROLLED_BACK


def test_inconclusive_checks_never_advance_a_step() -> None:
    d = Driver(_spec())
    _to_canary(d)
    for _ in range(10):
        d.step(2, check=Verdict.INCONCLUSIVE, advance=5)
    assert d.status.canary is not None
    assert d.status.canary.step == 0
    assert d.status.analysis is not None
    assert d.status.analysis.failures == 0
    assert d.status.phase == DeploymentPhase.PROGRESSING


def test_pause_holds_but_analysis_can_still_roll_back() -> None:
    d = Driver(_spec())
    _to_canary(d)
    d.spec = _spec(paused=True)
    d.step(2, check=Verdict.PASS, advance=30)
    assert d.status.phase == DeploymentPhase.PAUSED
    assert d.status.canary is not None
    assert d.status.canary.step == 0
    d.step(2, check=Verdict.FAIL, advance=2)
    d.step(2, check=Verdict.FAIL, advance=2)
    assert d.status.phase == DeploymentPhase.ROLLED_BACK


def test_a_step_without_pause_waits_for_a_manual_promotion_of_that_version() -> None:
    d = Driver(_spec(steps=[{"weight": 20}]))
    _to_canary(d)
    d.step(2, check=Verdict.PASS, advance=60)
    assert d.status.phase == DeploymentPhase.PAUSED
    reasons = {c.type: c.reason for c in d.status.conditions}
    assert reasons["Progressing"] == "WaitingForPromotion"
    d.spec = _spec(steps=[{"weight": 20}], promote={"version": 3})  # another version: no effect
    d.step(2, advance=1)
    assert d.status.phase == DeploymentPhase.PAUSED
    d.spec = _spec(steps=[{"weight": 20}], promote={"version": 2})
    d.step(2, advance=1)
    d.step(2)
    assert d.status.stable is not None
    assert d.status.stable.version == 2


def test_autopromote_off_holds_after_the_last_step() -> None:
    d = Driver(_spec(steps=[{"weight": 20, "pause": "1s"}], autoPromote=False))
    _to_canary(d)
    d.step(2, check=Verdict.PASS, advance=3)
    assert d.status.phase == DeploymentPhase.PAUSED
    assert d.status.canary is not None


def test_abort_rejects_only_its_version() -> None:
    d = Driver(_spec())
    _to_canary(d)
    d.spec = _spec(abort={"version": 2})
    plan = d.step(2, advance=1)
    assert d.status.phase == DeploymentPhase.ROLLED_BACK
    assert d.status.history[0].event == "Aborted"
    assert d.status.rejected_versions == [2]
    assert [w.version for w in plan.workloads] == [1]


def test_a_newer_version_supersedes_the_canary_without_rejecting_it_when_asked_to() -> None:
    d = Driver(_spec(onNewVersion="Supersede"))
    _to_canary(d)
    d.step(3, advance=1)
    assert d.status.canary is not None
    assert (d.status.canary.version, d.status.canary.step) == (3, 0)
    assert d.status.rejected_versions == []
    assert "CanarySuperseded" in d.reasons()


def test_canary_pods_never_ready_roll_back_after_the_progress_deadline() -> None:
    d = Driver(_spec(progressDeadline="30s"))
    _to_canary(d)
    d.step(2, ready={1: 2}, advance=20)
    assert d.status.canary is not None
    d.step(2, ready={1: 2}, advance=15)
    assert d.status.phase == DeploymentPhase.ROLLED_BACK
    assert "not ready" in d.status.history[0].message


def test_restart_resumes_at_the_same_step() -> None:
    d = Driver(_spec())
    _to_canary(d)
    d.step(2, check=Verdict.PASS, advance=11)
    assert d.status.canary is not None
    assert d.status.canary.step == 1
    # A new operator: only the stored status survives. Nothing restarts from step 0,
    # and the same decisions follow.
    restarted = Driver(_spec())
    restarted.status = DeploymentStatus.model_validate(d.status.to_wire())
    restarted.now, restarted.pods = d.now, dict(d.pods)
    plan = restarted.step(2, advance=1)
    assert restarted.status.canary is not None
    assert restarted.status.canary.step == 1
    assert not [e for e in plan.events if e.reason == "CanaryStep"]


def test_check_timing() -> None:
    d = Driver(_spec())
    _to_canary(d)
    assert canary.needs_scrape(spec=d.spec, status=d.status, now=d.now)  # no baseline yet
    assert not canary.check_due(spec=d.spec, status=d.status, now=d.now + timedelta(seconds=1))
    assert canary.check_due(spec=d.spec, status=d.status, now=d.now + timedelta(seconds=2))
    d.step(2, check=Verdict.PASS, advance=2)
    assert not canary.check_due(spec=d.spec, status=d.status, now=d.now + timedelta(seconds=1))


def _versions(*pairs: tuple[int, ModelPhase | None]) -> list[VersionInfo]:
    return [VersionInfo(version=v, name=f"iris-v{v}", phase=p) for v, p in pairs]


def test_resolve_latest_skips_rejected_aborted_and_unvalidated() -> None:
    versions = _versions(
        (1, ModelPhase.VALIDATED),
        (2, ModelPhase.VALIDATED),
        (3, ModelPhase.REJECTED),
        (4, ModelPhase.PENDING),
        (5, ModelPhase.VALIDATED),
    )
    status = DeploymentStatus(rejected_versions=[5])
    assert canary.resolve(spec=_spec(), status=status, generation=1, versions=versions).version == 2
    aborting = _spec(abort={"version": 2})
    assert canary.resolve(spec=aborting, status=status, generation=1, versions=versions).version == 1
    none = canary.resolve(
        spec=_spec(), status=DeploymentStatus(rejected_versions=[1, 2, 5]), generation=9, versions=versions
    )
    assert none.version is None
    assert "[1, 2, 5]" in none.problem


@pytest.mark.parametrize(("generation", "expected"), [(3, None), (4, 2)])
def test_a_pinned_rejected_version_is_retried_only_after_a_spec_change(
    generation: int, expected: int | None
) -> None:
    spec = DeploymentSpec.model_validate({"model": "iris", "version": 2})
    status = DeploymentStatus(rejected_versions=[2], rejected_generation=3)
    versions = _versions((1, ModelPhase.VALIDATED), (2, ModelPhase.VALIDATED))
    assert (
        canary.resolve(spec=spec, status=status, generation=generation, versions=versions).version == expected
    )


def test_resolve_pinned_problems() -> None:
    spec = DeploymentSpec.model_validate({"model": "iris", "version": 7})
    missing = canary.resolve(spec=spec, status=DeploymentStatus(), generation=1, versions=[])
    assert (missing.version, missing.permanent) == (None, False)
    failed = canary.resolve(
        spec=spec, status=DeploymentStatus(), generation=1, versions=_versions((7, ModelPhase.FAILED))
    )
    assert (failed.version, failed.permanent) == (None, True)


def test_the_pause_counts_from_when_the_canary_pods_are_ready() -> None:
    d = Driver(_spec())
    d.step(1)
    d.step(1)
    d.step(2, ready={1: 2})
    d.step(2, ready={1: 2}, check=Verdict.INCONCLUSIVE, advance=20)  # slow pod start: longer than the pause
    assert d.status.canary is not None
    assert d.status.canary.weight_reached_time is None
    d.step(2, check=Verdict.PASS, advance=2)  # ready now; the 10 s pause starts here
    assert d.status.canary.step == 0
    d.step(2, check=Verdict.PASS, advance=9)
    assert d.status.canary.step == 0
    d.step(2, check=Verdict.PASS, advance=2)
    assert d.status.canary is not None
    assert d.status.canary.step == 1


def test_gateway_mode_weights_come_from_the_accepted_route() -> None:
    spec = DeploymentSpec.model_validate(
        {
            "model": "iris",
            "replicas": 4,
            "traffic": {"mode": "gatewayAPI", "gateway": {"parentRef": {"name": "gw"}}},
            "rollout": {"steps": [{"weight": 10, "pause": "10s"}], "analysis": {"interval": "2s"}},
        }
    )
    status = DeploymentStatus()
    for target, route_weight in ((1, None), (2, None), (2, 10)):
        world = World(
            now=T0,
            generation=1,
            spec=spec,
            status=status,
            ready={1: 4, 2: 1},
            gateway=True,
            target=Target(version=target, name=f"iris-v{target}"),
            route_weight=route_weight,
        )
        plan = canary.plan(world)
        status = plan.status
    assert plan.route == [(1, 90), (2, 10)]
    assert {(w.version, w.replicas) for w in plan.workloads} == {(1, 4), (2, 1)}  # capacity, not the split
    assert status.canary is not None
    assert status.canary.weight == 10  # only once a Gateway accepted the route; 0 before
    unserved = canary.plan(
        World(
            now=T0,
            generation=1,
            spec=spec,
            status=status,
            ready={1: 4, 2: 1},
            target=Target(version=2, name="iris-v2"),
            traffic_problem="no HTTPRoute CRD",
        )
    )
    degraded = {c.type: c for c in unserved.status.conditions}["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "GatewayAPIUnavailable")
    assert unserved.route is None
    assert unserved.status.canary is not None
    assert unserved.status.canary.weight == 20  # replicas mode: 1 of 5 ready endpoints
