"""Canaries finish: a newer version arriving during a canary is queued (or supersedes it when asked)."""

from __future__ import annotations

from typing import Any

import pytest

from loopwright.api.deployment import CanaryStatus, DeploymentPhase, DeploymentSpec, Verdict
from loopwright.core.rollout import queue
from unit.test_rollout_canary import Driver, _to_canary


def _spec(version: int | str = "latest", **rollout: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "steps": [{"weight": 10, "pause": "10s"}, {"weight": 50, "pause": "10s"}],
        "analysis": {"interval": "2s", "failureLimit": 1, "minRequests": 5},
        **rollout,
    }
    return DeploymentSpec.model_validate(
        {"model": "iris", "replicas": 2, "version": version, "rollout": base}
    )


CANARY = CanaryStatus(version=2, model_version="iris-v2")


@pytest.mark.parametrize(
    ("spec", "target", "servable", "keep", "queued"),
    [
        (_spec(), 2, None, True, None),  # the canary is what the spec asks for
        (_spec(), 3, None, True, 3),  # a newer version waits (the default, Queue)
        (_spec(), 5, {2, 3, 4, 5}, True, 5),  # the newest waits; those in between are skipped
        (_spec(onNewVersion="Supersede"), 3, None, False, None),  # asked for: the newer one replaces it
        (_spec(version=3), 3, None, False, None),  # the user pinned another version
        (_spec(), None, None, False, None),  # nothing to serve any more
        (_spec(), 3, {3}, False, None),  # the canary's version is no longer Validated
        (_spec(), 1, {1}, False, None),  # an older target: the canary's version went away
    ],
)
def test_what_a_new_target_does_to_the_canary(
    spec: DeploymentSpec, target: int | None, servable: set[int] | None, keep: bool, queued: int | None
) -> None:
    decision = queue.on_target(
        spec=spec, canary=CANARY, target=target, problem="no version", servable=servable
    )
    assert (decision.keep, decision.queued) == (keep, queued)
    assert bool(decision.why) != keep


def test_a_steady_stream_of_versions_cannot_starve_the_canary() -> None:
    d = Driver(_spec())
    _to_canary(d)
    # Versions 3, 4, 5 arrive while version 2 is the canary: it goes on, the newest waits.
    for version in (3, 4, 5):
        d.step(version, advance=1)
        assert d.status.canary is not None
        assert d.status.canary.version == 2
        assert d.status.queued is not None
        assert d.status.queued.version == version
    assert d.reasons().count("VersionQueued") == 3
    assert "CanarySuperseded" not in d.reasons()
    queued_since = d.status.queued.since
    # Version 2 passes both steps and is promoted; version 5 (not 3 or 4) is the next canary.
    d.step(5, check=Verdict.PASS, advance=11)
    assert d.status.canary is not None
    assert d.status.canary.step == 1
    assert d.status.queued is not None
    assert d.status.queued.since == queued_since
    d.step(5)
    d.step(5, check=Verdict.PASS, advance=11)
    assert d.status.stable is not None
    assert d.status.stable.version == 2
    assert d.status.canary is not None
    assert (d.status.canary.version, d.status.canary.step) == (5, 0)
    assert d.status.queued is None
    assert [h.event for h in d.status.history] == ["Promoted", "Deployed"]


def test_a_rolled_back_canary_hands_over_to_the_queued_version() -> None:
    d = Driver(_spec())
    _to_canary(d)
    d.step(3, advance=1)
    d.step(3, check=Verdict.FAIL, advance=2)
    d.step(3, check=Verdict.FAIL, advance=2)
    assert d.status.rejected_versions == [2]
    assert d.status.canary is not None
    assert d.status.canary.version == 3
    assert d.status.phase == DeploymentPhase.PROGRESSING
    assert d.status.queued is None
