"""What the canary planner takes in (a :class:`World`) and gives out (a :class:`Plan`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from loopwright.api.deployment import AnalysisResult, DeploymentSpec, DeploymentStatus, PodWindow, Verdict
from loopwright.core.conditions import Event
from loopwright.core.rollout.target import Target
from loopwright.core.rollout.timing import IDLE_SECONDS


class Outcome(StrEnum):
    """What a finished rollout is recorded as in ``status.history``."""

    DEPLOYED = "Deployed"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"


@dataclass(frozen=True, kw_only=True)
class Check:
    """An analysis check the controller ran because :func:`.timing.check_due` said so."""

    results: list[AnalysisResult]
    verdict: Verdict


@dataclass(frozen=True, kw_only=True)
class World:
    """Everything :func:`loopwright.core.rollout.canary.plan` needs, observed by the controller."""

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
    stable_size: int | None = None
    """With spec.autoscaling: the stable workload's replicas as its autoscaler set them (None: no
    workload yet, so minReplicas)."""


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One apps/v1 Deployment to keep, with its replicas (versions not listed are deleted)."""

    version: int
    model_version: str
    replicas: int
    autoscaled: bool = False
    """A HorizontalPodAutoscaler owns its replicas: ``replicas`` is what it chose, never written."""


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
