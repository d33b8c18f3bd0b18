"""Converging a Deployment's children to the plan: workloads first, then what points at them, then
the registry (the production alias and the ModelVersions' deployment history).

Children are applied server-side under the ``loopwright`` field manager (idempotent, a no-op when
nothing changed). The alias moves where the planner says (``plan.alias``), and every round makes
sure the stable version carries it and no version this Deployment left does, so a crash between
the status write and the move is repaired by the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from loopwright.api.deployment import TrafficMode
from loopwright.api.kinds import DEPLOYMENT as KIND
from loopwright.core.rollout import canary, traffic
from loopwright.core.training import compiled
from loopwright.operator.builders import autoscaler
from loopwright.operator.builders import predictor as build
from loopwright.operator.builders.common import Owner, owner_reference
from loopwright.operator.builders.pods import Role
from loopwright.operator.controllers._common import now, stamp
from loopwright.operator.controllers.deployment.observe import MODEL_VERSIONS, Observed
from loopwright.operator.runtime.client import (
    AUTOSCALERS,
    DISRUPTION_BUDGETS,
    FIELD_MANAGER,
    HTTPROUTES,
    SERVICES,
    WORKLOADS,
    ApiError,
    Obj,
    resource,
)
from loopwright.operator.runtime.controller import Context
from loopwright.operator.runtime.status import Decision

RES = resource(KIND)
PRODUCTION = "production"
HISTORY_LIMIT = 50
_log = logging.getLogger(__name__)


async def converge(ctx: Context, obs: Observed, plan: canary.Plan) -> None:
    """Make the children match the plan: workloads first, then the things that point at them."""
    obj, spec = obs.obj, obs.spec
    meta = obj["metadata"]
    owner = Owner(kind=KIND.kind, name=meta["name"], uid=meta["uid"], namespace=meta["namespace"])
    cfg = ctx.config
    pods = build.PodSettings(image=cfg.predictor_image, s3_endpoint=cfg.s3_endpoint,
                             credentials_secret=cfg.s3_secret.name if cfg.s3_secret else None,
                             artifact_bucket=cfg.artifact_bucket, pod_defaults=cfg.pod_defaults,
                             default_resources=cfg.default_resources.get(Role.PREDICTOR))
    autoscaled = [w.version for w in plan.workloads if w.autoscaled]
    # Autoscalers no longer wanted go first: none is left to resize what is applied below.
    await _prune_autoscalers(ctx, obs, keep={build.workload_name(owner.name, v) for v in autoscaled})
    keep: set[str] = set()
    for workload in plan.workloads:
        mv = obs.versions.get(workload.version)
        name = build.workload_name(owner.name, workload.version)
        keep.add(name)
        if mv is None:
            # The ModelVersion of a served workload vanished: keep the pods, only follow the replica count
            # (which an autoscaler may own).
            try:
                if not workload.autoscaled:
                    await ctx.api.scale(WORKLOADS, owner.namespace, name, workload.replicas)
            except ApiError as exc:
                _log.info("cannot scale %s/%s: %s", owner.namespace, name, exc)
            continue
        if workload.autoscaled:
            await _hand_over(ctx, obs.workloads.get(workload.version))
        mv_spec = mv["spec"]
        served = build.Served(model=spec.model, version=workload.version,
                              model_version=workload.model_version, artifact_uri=mv_spec["artifact"]["uri"],
                              artifact_sha256=mv_spec["artifact"]["sha256"],
                              profile_uri=mv_spec.get("profileUri", ""),
                              profile_sha256=mv_spec.get("profileSha256"), compiled=compiled.servable(mv),
                              image=mv_spec.get("image"),
                              trusted_types=tuple(mv_spec["artifact"].get("trustedTypes") or ()))
        await ctx.api.apply(WORKLOADS, build.deployment(
            owner=owner, spec=spec, served=served, settings=pods,
            replicas=None if workload.autoscaled else workload.replicas))
    await ctx.api.apply(SERVICES, build.service(owner=owner, model=spec.model))
    await ctx.api.apply(DISRUPTION_BUDGETS, build.disruption_budget(owner=owner, model=spec.model))
    gateway = spec.traffic.mode == TrafficMode.GATEWAY_API and obs.gateway_installed
    if gateway and plan.route is not None and spec.traffic.gateway is not None:
        for version, _ in plan.route:
            await ctx.api.apply(SERVICES, build.service(owner=owner, model=spec.model, version=version))
        route = traffic.httproute(name=owner.name, namespace=owner.namespace,
                                  labels=build.selector(owner.name),
                                  parent=spec.traffic.gateway.parent_ref.to_wire(), port=build.SERVICE_PORT,
                                  backends=[(build.workload_name(owner.name, v), w) for v, w in plan.route])
        route["metadata"]["ownerReferences"] = [owner_reference(owner)]
        await ctx.api.apply(HTTPROUTES, route)
    await _delete_others(ctx, owner=owner, keep=keep, gateway=gateway)
    if spec.autoscaling is not None:  # after their workloads exist: a fresh HPA finds what it scales
        for version in autoscaled:
            hpa = autoscaler.autoscaler(owner=owner, model=spec.model, version=version,
                                        autoscaling=spec.autoscaling)
            await ctx.api.apply(AUTOSCALERS, hpa)
    await _move_alias(ctx, obs, plan)
    await _record_registry(ctx, obs, plan)


async def _hand_over(ctx: Context, live: Obj | None) -> None:
    """Before a workload is applied without replicas, keep the ones the operator applied so far
    (:mod:`loopwright.operator.builders.autoscaler`): without this they would be reset to 1."""
    handover = None if live is None else autoscaler.handover(live, manager=FIELD_MANAGER)
    if handover is not None:
        meta = handover["metadata"]
        _log.info("handing the replicas of %s/%s over to its autoscaler", meta["namespace"], meta["name"])
        await ctx.api.apply(WORKLOADS, handover, manager=autoscaler.HANDOVER_MANAGER)


async def _prune_autoscalers(ctx: Context, obs: Observed, *, keep: set[str]) -> None:
    for hpa in obs.autoscalers:
        meta = hpa["metadata"]
        if meta["name"] not in keep and meta.get("deletionTimestamp") is None:
            _log.info("deleting HorizontalPodAutoscaler %s/%s", meta["namespace"], meta["name"])
            await ctx.api.delete(AUTOSCALERS, meta["namespace"], meta["name"])


async def _delete_others(ctx: Context, *, owner: Owner, keep: set[str], gateway: bool) -> None:
    """The workloads (and, with gatewayAPI, the per-version Services) the plan no longer has."""
    selector = build.pod_selector(owner.name)
    for workload in await ctx.api.list(WORKLOADS, owner.namespace, selector=selector):
        meta = workload["metadata"]
        if meta["name"] not in keep and meta.get("deletionTimestamp") is None:
            _log.info("deleting workload %s/%s", owner.namespace, meta["name"])
            await ctx.api.delete(WORKLOADS, owner.namespace, meta["name"])
    if gateway:
        for svc in await ctx.api.list(SERVICES, owner.namespace, selector=selector):
            name = svc["metadata"]["name"]
            if name != owner.name and name not in keep:
                await ctx.api.delete(SERVICES, owner.namespace, name)


def _aliases(status: Mapping[str, Any]) -> list[str]:
    return list(status.get("aliases") or [])


async def _set_alias(ctx: Context, mv: Obj, *, on: bool) -> None:
    """Add or remove `production` on a ModelVersion (its aliases belong to this controller)."""
    def aliases(status: Mapping[str, Any]) -> dict[str, Any]:
        current = _aliases(status)
        if on:
            return {"aliases": current if PRODUCTION in current else [*current, PRODUCTION]}
        return {"aliases": [a for a in current if a != PRODUCTION]}

    await ctx.status.write(MODEL_VERSIONS, mv, Decision(transaction=aliases, observed=False))


async def _move_alias(ctx: Context, obs: Observed, plan: canary.Plan) -> None:
    """`production` on the stable version, and on no other version of the model this Deployment left."""
    stable = plan.status.stable
    by_name = {mv["metadata"]["name"]: mv for mv in obs.versions.values()}
    if plan.alias is not None:
        previous, new = plan.alias
        _log.info("Deployment %s: production moves from %s to %s", obs.obj["metadata"]["name"], previous, new)
    if stable is None:
        return
    left = {h.version for h in plan.status.history} - {stable.version}
    if plan.alias is not None and plan.alias[0] in by_name:
        left.add(int(by_name[plan.alias[0]]["spec"]["version"]))
    for number, mv in obs.versions.items():
        carries = PRODUCTION in _aliases(mv.get("status") or {})
        if number == stable.version and not carries:
            await _set_alias(ctx, mv, on=True)
        elif (number != stable.version and number in left and carries
              and not await _served_elsewhere(ctx, obs, number)):
            await _set_alias(ctx, mv, on=False)


async def _served_elsewhere(ctx: Context, obs: Observed, version: int) -> bool:
    """Another Deployment of the same model in the namespace serves ``version`` as stable."""
    meta = obs.obj["metadata"]
    for other in await ctx.api.list(RES, meta["namespace"]):
        if other["metadata"]["name"] == meta["name"] or other.get("spec", {}).get("model") != obs.spec.model:
            continue
        if ((other.get("status") or {}).get("stable") or {}).get("version") == version:
            return True
    return False


async def _record_registry(ctx: Context, obs: Observed, plan: canary.Plan) -> None:
    """Add this Deployment's events to the ModelVersions' deployment history (best effort)."""
    by_name = {mv["metadata"]["name"]: mv for mv in obs.versions.values()}
    deployment = obs.obj["metadata"]["name"]
    moment = stamp(now())
    for mv_name, event, message in plan.registry:
        mv = by_name.get(mv_name)
        if mv is None:
            continue
        entry = {"deployment": deployment, "event": event, "time": moment, "message": message[:1024]}

        def history(status: Mapping[str, Any], entry: Mapping[str, Any] = entry) -> dict[str, Any]:
            return {"deployments": [entry, *(status.get("deployments") or [])][:HISTORY_LIMIT]}

        try:
            await ctx.status.write(MODEL_VERSIONS, mv, Decision(transaction=history, observed=False))
        except ApiError as exc:
            _log.warning("cannot record %s on ModelVersion %s: %s", event, mv_name, exc)


async def release_alias(ctx: Context, body: Mapping[str, Any]) -> None:
    """A deleted Deployment no longer serves its stable version: drop `production` (best effort)."""
    meta = body.get("metadata", {})
    stable = ((body.get("status") or {}).get("stable") or {}).get("modelVersion")
    if not stable:
        return
    try:
        mv = await ctx.api.get(MODEL_VERSIONS, meta.get("namespace", ""), stable)
        if mv is not None and PRODUCTION in _aliases(mv.get("status") or {}):
            await _set_alias(ctx, mv, on=False)
    except ApiError as exc:
        if exc.status != HTTPStatus.NOT_FOUND:
            _log.info("cannot release the production alias of %s: %s", stable, exc)
