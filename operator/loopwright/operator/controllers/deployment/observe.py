"""Observing a Deployment's world: its ModelVersions, its predictor pods, its HTTPRoute, its
HorizontalPodAutoscalers and, with spec.autoscaling, its workloads (the replicas the autoscaler set).

Children are read on demand, never watched: watching apps/v1 Deployments or pods would stream
every such object of the cluster into the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loopwright.api.deployment import DeploymentSpec, DeploymentStatus, TrafficMode
from loopwright.api.kinds import MODEL_VERSION
from loopwright.api.labels import DEPLOYMENT_LABEL, VERSION_LABEL
from loopwright.api.modelversion import ModelPhase
from loopwright.core.exposition import PodTarget
from loopwright.core.rollout import canary, traffic
from loopwright.operator.probes.scrape import pod_target
from loopwright.operator.runtime.client import AUTOSCALERS, HTTPROUTES, PODS, WORKLOADS, Obj, resource
from loopwright.operator.runtime.controller import Context

MODEL_VERSIONS = resource(MODEL_VERSION)


@dataclass(kw_only=True)
class Observed:
    obj: Obj
    spec: DeploymentSpec
    status: DeploymentStatus
    versions: dict[int, Obj]
    ready: dict[int, int]
    targets: list[PodTarget]
    created: dict[str, datetime | None]
    route: Obj | None = None
    gateway_installed: bool = True
    pods: list[Obj] = field(default_factory=list)
    workloads: dict[int, Obj] = field(default_factory=dict)
    """The apps/v1 Deployment of each version (read with spec.autoscaling only)."""
    autoscalers: list[Obj] = field(default_factory=list)
    """This Deployment's HPAs (pruned when autoscaling is off or their version is gone)."""

    def stable_size(self) -> int | None:
        """The stable workload's replicas, as its autoscaler left them (None: no such workload)."""
        if self.status.stable is None:
            return None
        replicas = (self.workloads.get(self.status.stable.version, {}).get("spec") or {}).get("replicas")
        return replicas if isinstance(replicas, int) else None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


async def observe(ctx: Context, obj: Obj, spec: DeploymentSpec, status: DeploymentStatus) -> Observed:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    versions: dict[int, Obj] = {}
    for mv in await ctx.api.list(MODEL_VERSIONS, namespace):
        mv_spec = mv.get("spec", {})
        if mv_spec.get("model") == spec.model and isinstance(mv_spec.get("version"), int):
            versions[mv_spec["version"]] = mv
    children = f"{DEPLOYMENT_LABEL}={name}"
    pods = await ctx.api.list(PODS, namespace, selector=children)
    ready: dict[int, int] = {}
    targets: list[PodTarget] = []
    created: dict[str, datetime | None] = {}
    for pod in pods:
        target = pod_target(pod, version_label=VERSION_LABEL)
        if target is None or not target.version.isdigit():
            continue
        ready[int(target.version)] = ready.get(int(target.version), 0) + 1
        targets.append(target)
        created[target.uid] = _time(pod["metadata"].get("creationTimestamp"))
    observed = Observed(obj=obj, spec=spec, status=status, versions=versions, ready=ready, targets=targets,
                        created=created, pods=pods)
    observed.autoscalers = await ctx.api.list(AUTOSCALERS, namespace, selector=children)
    if spec.autoscaling is not None:
        for workload in await ctx.api.list(WORKLOADS, namespace, selector=children):
            version = str((workload["metadata"].get("labels") or {}).get(VERSION_LABEL, ""))
            if version.isdigit():
                observed.workloads[int(version)] = workload
    if spec.traffic.mode == TrafficMode.GATEWAY_API:
        observed.route = await ctx.api.get(HTTPROUTES, namespace, name)
        if observed.route is None:
            observed.gateway_installed = await ctx.api.serves(
                traffic.HTTPROUTE_GROUP, traffic.HTTPROUTE_VERSION, traffic.HTTPROUTE_PLURAL)
    return observed


def version_infos(versions: Mapping[int, Obj]) -> list[canary.VersionInfo]:
    infos = []
    for number, mv in versions.items():
        phase = str((mv.get("status") or {}).get("phase") or "")
        infos.append(canary.VersionInfo(
            version=number, name=mv["metadata"]["name"],
            phase=ModelPhase(phase) if phase in ModelPhase.__members__.values() else None))
    return infos


def target(obs: Observed, *, generation: int) -> canary.Target:
    """The version the Deployment should serve (None with why, when there is none to serve)."""
    found = canary.resolve(spec=obs.spec, status=obs.status, generation=generation,
                           versions=version_infos(obs.versions))
    if found.version is not None and not obs.versions[found.version].get("spec", {}).get("profileUri"):
        return canary.Target(version=None, permanent=True,
                             problem=f"ModelVersion {found.name} has no spec.profileUri: the predictor needs "
                                     "its reference profile")
    return found
