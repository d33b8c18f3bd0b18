"""The Deployment controller (loopwright.dev/v1alpha1): serving and canary rollouts.

Selectors name group, version and plural explicitly: "deployments" alone would be ambiguous with
apps/v1 Deployment, which kopf refuses to serve.

watch → observe → plan → apply. Events of a Deployment (a new spec) and of the ModelVersions of
its model (``latest`` may now mean another one) enqueue it, and so does the deletion of one of its
workloads or Services (from a watch that streams only those: a server-side label selector). Each
reconcile reads the object, its ModelVersions and its pods (:mod:`.observe`), scrapes the
predictors when the analysis needs it (:mod:`.analysis`), asks
:func:`loopwright.core.rollout.canary.plan` what to do, then writes the status *first* and
converges the children after (:mod:`.converge`): if the operator dies in between, the status (the
only memory) already holds the decision and the next reconcile finishes it. The plan says when to
look again (an analysis check, the end of a pause, pods to wait for). No finalizer: deleting a
Deployment (or its namespace) never waits for the operator.
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Any

import kopf

from loopwright.api import reasons
from loopwright.api.common import Condition
from loopwright.api.deployment import DeploymentPhase, DeploymentSpec, DeploymentStatus, TrafficMode
from loopwright.api.kinds import DEPLOYMENT as KIND
from loopwright.api.kinds import MODEL_VERSION
from loopwright.api.labels import DEPLOYMENT_LABEL
from loopwright.api.modelversion import ModelPhase
from loopwright.core.conditions import READY, Event, Verdict, find, merge
from loopwright.core.rollout import canary, traffic
from loopwright.operator.builders import autoscaler
from loopwright.operator.builders import predictor as build
from loopwright.operator.controllers._common import now, parse_spec
from loopwright.operator.controllers.deployment import analysis, converge
from loopwright.operator.controllers.deployment.observe import Observed, observe, target
from loopwright.operator.runtime.client import ApiError, resource
from loopwright.operator.runtime.controller import MANAGER, Context, Key
from loopwright.operator.runtime.queue import Result
from loopwright.operator.runtime.status import Conflict, Decision
from loopwright.operator.runtime.watch import Changes

RES = resource(KIND)
CONFLICT_RETRY = 0.2
_TRAFFIC_PROBLEM = ("traffic.mode is gatewayAPI but the cluster serves no gateway.networking.k8s.io/v1 "
                    "HTTPRoute: weights follow replicas")


class Deployments:
    kind = KIND.kind
    workers = 8

    def __init__(self) -> None:
        self.models: dict[Key, str] = {}
        """The model each Deployment serves: which of them a ModelVersion event concerns."""

    async def reconcile(self, ctx: Context, key: Key) -> Result:
        obj = await ctx.api.get(RES, *key)
        if obj is None:
            return Result()
        generation = int(obj["metadata"].get("generation") or 0)
        parsed = parse_spec(KIND, obj.get("spec") or {})
        if not isinstance(parsed, DeploymentSpec):
            await ctx.status.write(RES, obj, Decision(fields={"phase": DeploymentPhase.FAILED}, verdicts=[
                Verdict(type=READY, status=False, reason=reasons.INVALID_SPEC, message=str(parsed))]))
            return Result()
        status = DeploymentStatus.model_validate(obj.get("status") or {})
        obs = await observe(ctx, obj, parsed, status)
        plan = await _plan(ctx, obs, generation=generation)
        try:
            # Every field written, None as null: a merge patch deletes nulls at any depth, whereas a
            # missing key would leave a stale nested value behind (e.g. canary.weightReachedTime).
            decided = Decision(fields=plan.status.model_dump(mode="json", by_alias=True), replace=True)
            await ctx.status.write(RES, obj, decided, merge_on_conflict=False)
        except Conflict:
            return Result(requeue_after=CONFLICT_RETRY)  # a spec edit meanwhile: decide again on a fresh read
        # Events belong to the decision just recorded, so they go out before the cluster converges.
        for event in plan.events:
            await ctx.events.record(obj, type_=event.type, reason=event.reason, message=event.message)
        try:
            await converge.converge(ctx, obs, plan)
        except ApiError as exc:
            if not exc.is_(HTTPStatus.UNPROCESSABLE_ENTITY):
                raise
            # The API server refused a child built from this spec (a podTemplate value the CRD cannot
            # check, inside affinity say): unusable until the spec changes, which brings a new round.
            message = f"spec: the API server refused a child built from it: {exc.message}"
            fresh = await ctx.api.get(RES, *key)
            if fresh is not None:
                await ctx.status.write(RES, fresh, Decision(verdicts=[Verdict(
                    type=READY, status=False, reason=reasons.INVALID_SPEC, message=message[:4096])]))
            return Result()
        return Result(requeue_after=plan.wake_in)


async def _plan(ctx: Context, obs: Observed, *, generation: int) -> canary.Plan:
    """Scrape if the analysis needs it, then the pure planner."""
    spec, status = obs.spec, obs.status
    meta = obs.obj["metadata"]
    moment = now()
    window = check = None
    if canary.needs_scrape(spec=spec, status=status, now=moment) and status.canary and status.stable:
        judge = canary.check_due(spec=spec, status=status, now=moment)
        window, check, bounds = await analysis.scrape(ctx, obs, now=moment, judge=judge)
        if status.analysis is not None and bounds:
            status.analysis.latency_bounds = bounds
    route_weight = None
    if status.canary is not None and obs.route is not None:
        route_weight = traffic.route_weight(obs.route, canary_service=build.workload_name(meta["name"],
                                                                                          status.canary.version))
    gateway_wanted = spec.traffic.mode == TrafficMode.GATEWAY_API
    world = canary.World(
        gateway=gateway_wanted and obs.gateway_installed,
        traffic_problem=None if obs.gateway_installed or not gateway_wanted else _TRAFFIC_PROBLEM,
        now=moment, generation=generation, spec=spec, status=status,
        target=target(obs, generation=generation), ready=obs.ready, window=window, check=check,
        route_weight=route_weight, stable_size=obs.stable_size(),
        servable=frozenset(v for v, mv in obs.versions.items()
                           if (mv.get("status") or {}).get("phase") == ModelPhase.VALIDATED))
    plan = canary.plan(world)
    plan.status.url = build.url(name=meta["name"], namespace=meta["namespace"])
    plan.status.selector = build.pod_selector(meta["name"])
    publish(plan, build.model_loaded(obs.pods), generation=generation, now=moment)
    stable = plan.status.stable
    if spec.autoscaling is not None and stable is not None:
        name = build.workload_name(meta["name"], stable.version)
        hpa = next((h for h in obs.autoscalers if h["metadata"]["name"] == name), None)
        publish(plan, autoscaler.verdict(hpa), generation=generation, now=moment)
    else:
        plan.status.conditions = [c for c in plan.status.conditions if c.type != autoscaler.AUTOSCALING]
    return plan


def publish(plan: canary.Plan, verdict: Verdict, *, generation: int, now: datetime) -> None:
    """Publish a condition of the children (why predictor pods could not load their model, why
    the autoscaler cannot scale), with a Warning Event when it turns False or its message changes."""
    current = [c.to_wire() for c in plan.status.conditions]
    before = find(current, verdict.type)
    merged = merge(current, [verdict], generation=generation, now=now)
    plan.status.conditions = [Condition.model_validate(c) for c in merged]
    if verdict.status is False and (before is None or before.get("message") != verdict.message):
        plan.events.append(Event(type="Warning", reason=verdict.reason, message=verdict.message))


CONTROLLER = Deployments()
MANAGER.register(CONTROLLER)
_changes = Changes()


@kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural, id="deployment.watch")
async def watch(type: str | None, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    """Enqueue on spec changes; on deletion release the alias (no finalizer, so nothing else is owed)."""
    key = (str(namespace), name)
    if type == "DELETED":
        _changes.worth(type, body)
        CONTROLLER.models.pop(key, None)
        MANAGER.forget(KIND.kind, key)
        if MANAGER.context is not None:
            await converge.release_alias(MANAGER.context, body)
        return
    CONTROLLER.models[key] = str(body.get("spec", {}).get("model", ""))
    if _changes.worth(type, body):
        MANAGER.enqueue(KIND.kind, key)


@kopf.on.event("apps", "v1", "deployments", id="deployment.workload-deleted",
               labels={DEPLOYMENT_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "services", id="deployment.service-deleted", labels={DEPLOYMENT_LABEL: kopf.PRESENT})
async def child_event(type: str | None, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A predictor workload or Service was deleted (by a user, say): converge its owner now rather
    than at its next idle round (up to 30 s without a Service, or without pods). The watch carries a
    server-side label selector (main.configure_kopf): it streams only these children."""
    key = (str(namespace), str(labels[DEPLOYMENT_LABEL]))
    if type == "DELETED" and key in CONTROLLER.models:
        MANAGER.enqueue(KIND.kind, key)


@kopf.on.event(group=MODEL_VERSION.group, version=MODEL_VERSION.version, plural=MODEL_VERSION.plural,
               id="deployment.modelversions")
async def model_version_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """A version of a served model appeared or changed phase: `latest` may now mean another one."""
    model = body.get("spec", {}).get("model")
    for key, served in list(CONTROLLER.models.items()):
        if key[0] == namespace and served == model:
            MANAGER.enqueue(KIND.kind, key)

