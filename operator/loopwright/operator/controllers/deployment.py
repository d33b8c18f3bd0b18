"""Handlers of Deployment objects (loopwright.dev/v1alpha1): serving and canary rollouts.

Selectors name group, version and plural explicitly: "deployments" alone would be
ambiguous with apps/v1 Deployment, which kopf refuses to serve.

One scheduler task reconciles every Deployment when something is due (an analysis
check, the end of a pause, pods to wait for) or when an event arrives (a spec change,
a ModelVersion of its model changing). Handlers only wake it. No kopf timer or daemon:
those add finalizers, which would block deleting a Deployment (or its namespace)
while the operator is down. Children (apps/v1 Deployments, pods) are read on demand;
only the deletion of a workload or Service wakes the owner, from a watch that streams
nothing but them (a server-side label selector).

A reconcile reads the object, its ModelVersions and its pods, scrapes the predictors
when the analysis needs it, asks :func:`loopwright.core.rollout.canary.plan` what to do, then
writes the status *first* and converges the workloads after: if the operator dies in
between, the status (the only memory) already holds the decision and the next
reconcile finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any

import kopf
import kubernetes

from loopwright import storage
from loopwright.api.common import Condition
from loopwright.api.deployment import DeploymentPhase, DeploymentSpec, DeploymentStatus, TrafficMode
from loopwright.api.kinds import DEPLOYMENT as KIND
from loopwright.api.kinds import MODEL_VERSION
from loopwright.api.labels import DEPLOYMENT_LABEL, VERSION_LABEL
from loopwright.api.modelversion import ModelPhase
from loopwright.core.conditions import READY, Event, Verdict, find, merge
from loopwright.core.exposition import PodTarget
from loopwright.core.profile import FeatureProfile, Profile
from loopwright.core.rollout import analysis, canary, traffic
from loopwright.core.rollout import prometheus as prometheus_rules
from loopwright.core.training import compiled
from loopwright.operator import kube, metrics
from loopwright.operator.builders import predictor as build
from loopwright.operator.builders.common import Owner, owner_reference
from loopwright.operator.builders.pods import Role
from loopwright.operator.controllers import _runtime
from loopwright.operator.controllers._common import parse_spec, ready_status
from loopwright.operator.probes import prometheus as prometheus_probe
from loopwright.operator.probes.scrape import fetch_pod_metrics, pod_target
from loopwright.operator.runtime.status import without_nulls

_log = logging.getLogger(__name__)

PRODUCTION = "production"
FIELD_MANAGER = "loopwright"
SCRAPE_TIMEOUT = 3.0
ERROR_BACKOFF = 5.0
CONFLICT_RETRY = 0.2
CONCURRENCY = 8

Key = tuple[str, str]
Obj = dict[str, Any]


# -- the scheduler ----------------------------------------------------------------------------------


class _Scheduler:
    """Runs each Deployment's reconcile when due; never two of the same object at once."""

    def __init__(self) -> None:
        self.due: dict[Key, float] = {}
        self.models: dict[Key, str] = {}
        self.generations: dict[Key, int | None] = {}
        self.running: set[Key] = set()
        self.wake = asyncio.Event()
        self.gate = asyncio.Semaphore(CONCURRENCY)
        self.tasks: set[asyncio.Task[None]] = set()

    def schedule(self, key: Key, *, delay: float = 0.0) -> None:
        when = asyncio.get_running_loop().time() + delay
        self.due[key] = min(self.due.get(key, math.inf), when)
        self.wake.set()

    def forget(self, key: Key) -> None:
        self.due.pop(key, None)
        self.models.pop(key, None)
        self.generations.pop(key, None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for key in [k for k, t in self.due.items() if t <= now and k not in self.running]:
                del self.due[key]
                self.running.add(key)
                task = loop.create_task(self._one(key))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            pending = [t for k, t in self.due.items() if k not in self.running]
            timeout = max(0.05, min(pending) - now) if pending else 60.0
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=timeout)

    async def _one(self, key: Key) -> None:
        wake_in: float | None = ERROR_BACKOFF
        try:
            async with self.gate:
                with metrics.reconcile(kind=KIND.kind, handler="rollout"):
                    wake_in = await _reconcile(namespace=key[0], name=key[1])
        except Exception:
            _log.exception("reconcile of Deployment %s/%s failed; retrying in %.0fs", *key, ERROR_BACKOFF)
        finally:
            self.running.discard(key)
            if wake_in is not None and key in self.models:
                self.schedule(key, delay=wake_in)
            else:
                self.wake.set()


_scheduler: _Scheduler | None = None


@kopf.on.startup(id="deployment.startup")
async def _start(memo: Any, **_: Any) -> None:
    global _scheduler  # noqa: PLW0603 (one scheduler per operator process, made on its loop)
    _scheduler = _Scheduler()
    memo.deployment_scheduler = asyncio.get_running_loop().create_task(_scheduler.run())


@kopf.on.cleanup(id="deployment.cleanup")
async def _stop(memo: Any, **_: Any) -> None:
    task = getattr(memo, "deployment_scheduler", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural, id="deployment.watch")
async def _on_deployment(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    """Register, wake on spec changes, forget on deletion (no finalizer, so no cleanup is owed)."""
    if _scheduler is None:
        return
    meta = body.get("metadata", {})
    key = (meta.get("namespace", ""), meta.get("name", ""))
    if event.get("type") == "DELETED":
        _scheduler.forget(key)
        await asyncio.to_thread(_release_alias, body)
        return
    known = key in _scheduler.models
    _scheduler.models[key] = str(body.get("spec", {}).get("model", ""))
    generation = meta.get("generation")
    if not known or _scheduler.generations.get(key) != generation:
        _scheduler.generations[key] = generation
        _scheduler.schedule(key)


@kopf.on.event(
    group=MODEL_VERSION.group,
    version=MODEL_VERSION.version,
    plural=MODEL_VERSION.plural,
    id="deployment.modelversions",
)
async def _on_model_version(body: kopf.Body, **_: Any) -> None:
    """A version of a served model appeared or changed phase: `latest` may now mean another one."""
    if _scheduler is None:
        return
    namespace = body.get("metadata", {}).get("namespace", "")
    model = body.get("spec", {}).get("model")
    for key, served in list(_scheduler.models.items()):
        if key[0] == namespace and served == model:
            _scheduler.schedule(key)


@kopf.on.event("apps", "v1", "deployments", id="deployment.workload-deleted",
               labels={DEPLOYMENT_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "services", id="deployment.service-deleted",
               labels={DEPLOYMENT_LABEL: kopf.PRESENT})
async def _on_child(event: Mapping[str, Any], namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A predictor workload or Service was deleted (by a user, say): converge its owner now rather
    than at its next idle round (up to 30 s without a Service, or without pods). The watch carries a
    server-side label selector (main.configure_kopf): it streams only these children."""
    if _scheduler is None or event.get("type") != "DELETED":
        return
    key = (str(namespace), str(labels[DEPLOYMENT_LABEL]))
    if key in _scheduler.models:
        _scheduler.schedule(key)


# -- observing --------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class _Observed:
    obj: Obj
    spec: DeploymentSpec
    status: DeploymentStatus
    versions: dict[int, Obj]
    ready: dict[int, int]
    targets: list[PodTarget]
    created: dict[str, datetime | None]
    route: Obj | None = None
    gateway_installed: bool = True
    problems: list[str] = field(default_factory=list)
    pods: list[Any] = field(default_factory=list)


def _read(namespace: str, name: str) -> Obj | None:
    try:
        return kube.get_object(KIND, namespace=namespace, name=name)
    except kubernetes.client.ApiException as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return None
        raise


def _observe(obj: Obj, spec: DeploymentSpec, status: DeploymentStatus) -> _Observed:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    versions: dict[int, Obj] = {}
    for mv in kube.list_objects(MODEL_VERSION, namespace=namespace):
        mv_spec = mv.get("spec", {})
        if mv_spec.get("model") == spec.model and isinstance(mv_spec.get("version"), int):
            versions[mv_spec["version"]] = mv
    selector = f"{DEPLOYMENT_LABEL}={name}"
    pods = kube.core().list_namespaced_pod(namespace, label_selector=selector).items
    ready: dict[int, int] = {}
    targets: list[PodTarget] = []
    created: dict[str, datetime | None] = {}
    for pod in pods:
        target = pod_target(pod, version_label=VERSION_LABEL)
        if target is None or not target.version.isdigit():
            continue
        ready[int(target.version)] = ready.get(int(target.version), 0) + 1
        targets.append(target)
        created[target.uid] = pod.metadata.creation_timestamp
    observed = _Observed(
        obj=obj, spec=spec, status=status, versions=versions, ready=ready, targets=targets, created=created,
        pods=pods,
    )
    if spec.traffic.mode == TrafficMode.GATEWAY_API:
        try:
            observed.route = kube.custom_objects().get_namespaced_custom_object(
                traffic.HTTPROUTE_GROUP, traffic.HTTPROUTE_VERSION, namespace, traffic.HTTPROUTE_PLURAL, name
            )
        except kubernetes.client.ApiException as exc:
            if exc.status != HTTPStatus.NOT_FOUND:
                raise
            observed.gateway_installed = _httproute_served()
    return observed


def _httproute_served() -> bool:
    """Whether the cluster serves gateway.networking.k8s.io/v1 HTTPRoutes (the Gateway API CRDs)."""
    try:
        resources = kube.custom_objects().get_api_resources(
            traffic.HTTPROUTE_GROUP, traffic.HTTPROUTE_VERSION
        )
    except kubernetes.client.ApiException:
        return False
    return any(r.name == traffic.HTTPROUTE_PLURAL for r in resources.resources or ())


def _version_infos(versions: Mapping[int, Obj]) -> list[canary.VersionInfo]:
    infos = []
    for number, mv in versions.items():
        phase = str((mv.get("status") or {}).get("phase") or "")
        infos.append(
            canary.VersionInfo(
                version=number,
                name=mv["metadata"]["name"],
                phase=ModelPhase(phase) if phase in ModelPhase.__members__.values() else None,
            )
        )
    return infos


# -- analysis I/O -----------------------------------------------------------------------------------

_profiles: dict[tuple[str, str | None], Profile] = {}


def _prediction_profile(mv: Obj | None) -> FeatureProfile | None:
    """The reference prediction bins of a version (profiles are immutable: cached by URI and sha256)."""
    if mv is None:
        return None
    spec = mv.get("spec", {})
    uri, sha = spec.get("profileUri"), spec.get("profileSha256")
    if not uri:
        return None
    key = (uri, sha)
    if key not in _profiles:
        try:
            _profiles[key] = Profile.model_validate_json(storage.get_bytes(uri, sha256=sha))
        except (storage.StorageError, ValueError) as exc:
            _log.warning("cannot read the profile %s: %s", uri, exc)
            return None
    return _profiles[key].prediction


async def _scrape(
    obs: _Observed, *, now: datetime, judge: bool
) -> tuple[list[Any], canary.Check | None, list[float]]:
    """Update the analysis window from the pods of canary and stable; run a check if ``judge``."""
    status, spec = obs.status, obs.spec
    assert status.canary is not None
    assert status.stable is not None
    wanted = {str(status.canary.version), str(status.stable.version)}
    targets = [t for t in obs.targets if t.version in wanted]
    scraped = await fetch_pod_metrics(pods=targets, port=build.PORT, timeout=SCRAPE_TIMEOUT)
    window_status = status.analysis
    bounds = list(window_status.latency_bounds) if window_status is not None else []
    if not bounds:
        bounds = next(
            (analysis.latency_bounds(m) for m in scraped.values() if m.ok and analysis.latency_bounds(m)), []
        )
    rows = [
        (m.pod, int(m.pod.version), analysis.counters(m, bounds=bounds)) for m in scraped.values() if m.ok
    ]
    for m in scraped.values():
        if not m.ok:
            _log.info("scrape of pod %s failed: %s", m.pod.name, m.error)
    start = window_status.window_start if window_status is not None and window_status.window_start else now
    window = analysis.update_window(
        window_status.pods if window_status is not None else [],
        scraped=rows,
        window_start=start,
        created=obs.created,
    )
    if not judge:
        return window, None, bounds
    canary_totals = analysis.totals(window, version=status.canary.version, bounds=bounds)
    stable_totals = analysis.totals(window, version=status.stable.version, bounds=bounds)
    canary_profile = stable_profile = None
    if spec.rollout.analysis.metrics.prediction_drift is not None:
        canary_profile, stable_profile = await asyncio.gather(
            asyncio.to_thread(_prediction_profile, obs.versions.get(status.canary.version)),
            asyncio.to_thread(_prediction_profile, obs.versions.get(status.stable.version)),
        )
    meta = obs.obj["metadata"]
    target = prometheus_rules.Target(namespace=meta["namespace"], deployment=meta["name"], model=spec.model,
                                     version=status.canary.version, stable_version=status.stable.version)
    prometheus = await prometheus_probe.run(spec.rollout.analysis, target=target, timeout=SCRAPE_TIMEOUT,
                                            policy=_runtime.settings().egress)
    results, verdict = analysis.evaluate(
        spec=spec.rollout.analysis,
        canary=canary_totals,
        stable=stable_totals,
        canary_prediction=canary_profile,
        stable_prediction=stable_profile,
        prometheus=prometheus,
    )
    return window, canary.Check(results=results, verdict=verdict), bounds


# -- the reconcile ----------------------------------------------------------------------------------


async def _reconcile(*, namespace: str, name: str) -> float | None:
    """One round for one Deployment; returns seconds until the next round (None: the object is gone)."""
    obj = await asyncio.to_thread(_read, namespace, name)
    if obj is None:
        return None
    generation = int(obj["metadata"].get("generation") or 0)
    parsed = parse_spec(KIND, obj.get("spec") or {})
    raw_status = obj.get("status") or {}
    if isinstance(parsed, str):
        await asyncio.to_thread(_publish_invalid, obj, parsed)
        return None
    assert isinstance(parsed, DeploymentSpec)
    status = DeploymentStatus.model_validate(raw_status)
    obs = await asyncio.to_thread(_observe, obj, parsed, status)
    now = _runtime.now()
    target = _target(obs, generation=generation)
    window = check = None
    if (
        canary.needs_scrape(spec=parsed, status=status, now=now)
        and status.canary is not None
        and status.stable is not None
    ):
        judge = canary.check_due(spec=parsed, status=status, now=now)
        window, check, bounds = await _scrape(obs, now=now, judge=judge)
        if status.analysis is not None and bounds:
            status.analysis.latency_bounds = bounds
    route_weight = None
    if status.canary is not None and obs.route is not None:
        route_weight = traffic.route_weight(
            obs.route, canary_service=build.workload_name(name, status.canary.version)
        )
    gateway_wanted = parsed.traffic.mode == TrafficMode.GATEWAY_API
    world = canary.World(
        gateway=gateway_wanted and obs.gateway_installed,
        traffic_problem=None
        if obs.gateway_installed or not gateway_wanted
        else (
            "traffic.mode is gatewayAPI but the cluster serves no gateway.networking.k8s.io/v1 HTTPRoute: "
            "weights follow replicas"
        ),
        now=now,
        generation=generation,
        spec=parsed,
        status=status,
        target=target,
        ready=obs.ready,
        window=window,
        check=check,
        route_weight=route_weight,
        servable=frozenset(v for v, mv in obs.versions.items()
                           if (mv.get("status") or {}).get("phase") == ModelPhase.VALIDATED),
    )
    plan = canary.plan(world)
    plan.status.url = build.url(name=name, namespace=namespace)
    _model_loaded(plan, obs, generation=generation, now=now)
    # Every field written, None as null: a merge patch deletes nulls at any depth, whereas a
    # missing key would leave a stale nested value behind (e.g. canary.weightReachedTime).
    new_status = plan.status.model_dump(mode="json", by_alias=True)
    if _differs(raw_status, new_status):
        try:
            await asyncio.to_thread(_write_status, obj, new_status)
        except kubernetes.client.ApiException as exc:
            if exc.status != HTTPStatus.CONFLICT:
                raise
            # The object changed since it was read (a spec edit): decide again on a fresh read.
            _log.info("Deployment %s/%s changed during the reconcile; reconciling again", namespace, name)
            return CONFLICT_RETRY
    # Events belong to the decision just recorded, so they go out before the cluster converges.
    await asyncio.to_thread(_post_events, obj, plan.events)
    await asyncio.to_thread(_converge, obs, plan)
    return plan.wake_in


def _model_loaded(plan: canary.Plan, obs: _Observed, *, generation: int, now: datetime) -> None:
    """Publish why predictor pods could not load their model (a Warning Event when it starts)."""
    verdict = build.model_loaded(obs.pods)
    current = [c.to_wire() for c in plan.status.conditions]
    before = find(current, build.MODEL_LOADED)
    merged = merge(current, [verdict], generation=generation, now=now)
    plan.status.conditions = [Condition.model_validate(c) for c in merged]
    if verdict.status is False and (before is None or before.get("message") != verdict.message):
        plan.events.append(Event(type="Warning", reason=verdict.reason, message=verdict.message))


def _target(obs: _Observed, *, generation: int) -> canary.Target:
    target = canary.resolve(
        spec=obs.spec, status=obs.status, generation=generation, versions=_version_infos(obs.versions)
    )
    if target.version is not None and not obs.versions[target.version].get("spec", {}).get("profileUri"):
        return canary.Target(
            version=None,
            permanent=True,
            problem=f"ModelVersion {target.name} has no spec.profileUri: the predictor needs "
            "its reference profile",
        )
    return target


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return bool(without_nulls(old) != without_nulls(new))



def _write_status(obj: Obj, status: Mapping[str, Any]) -> None:
    """Replace the status (nulls delete fields), only if nobody changed the object since it was read."""
    meta = obj["metadata"]
    previous = obj.get("status") or {}
    body = {**{k: None for k in previous if k not in status}, **status}
    kube.custom_objects().patch_namespaced_custom_object_status(
        KIND.group,
        KIND.version,
        meta["namespace"],
        KIND.plural,
        meta["name"],
        {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": body},
    )


def _publish_invalid(obj: Obj, message: str) -> None:
    meta = obj["metadata"]
    verdict = Verdict(type=READY, status=False, reason="InvalidSpec", message=message)
    status = {
        **ready_status(status=obj.get("status"), generation=meta.get("generation"), verdict=verdict),
        "phase": DeploymentPhase.FAILED.value,
    }
    if _differs({k: (obj.get("status") or {}).get(k) for k in status}, status):
        _write_status(obj, {**(obj.get("status") or {}), **status})


# -- converging the cluster -------------------------------------------------------------------------


def _converge(obs: _Observed, plan: canary.Plan) -> None:
    """Make the children match the plan: workloads first, then the things that point at them."""
    obj, spec = obs.obj, obs.spec
    meta = obj["metadata"]
    owner = Owner(kind=KIND.kind, name=meta["name"], uid=meta["uid"], namespace=meta["namespace"])
    cfg = _runtime.settings()
    pods = build.PodSettings(
        image=cfg.predictor_image,
        s3_endpoint=cfg.s3_endpoint,
        credentials_secret=cfg.s3_secret.name if cfg.s3_secret else None,
        artifact_bucket=cfg.artifact_bucket,
        pod_defaults=cfg.pod_defaults,
        default_resources=cfg.default_resources.get(Role.PREDICTOR),
    )
    keep: set[str] = set()
    for workload in plan.workloads:
        mv = obs.versions.get(workload.version)
        name = build.workload_name(owner.name, workload.version)
        keep.add(name)
        if mv is None:
            _scale_only(namespace=owner.namespace, name=name, replicas=workload.replicas)
            continue
        mv_spec = mv["spec"]
        served = build.Served(
            model=spec.model,
            version=workload.version,
            model_version=workload.model_version,
            artifact_uri=mv_spec["artifact"]["uri"],
            artifact_sha256=mv_spec["artifact"]["sha256"],
            profile_uri=mv_spec.get("profileUri", ""),
            profile_sha256=mv_spec.get("profileSha256"),
            compiled=compiled.servable(mv),
            image=mv_spec.get("image"),
            trusted_types=tuple(mv_spec["artifact"].get("trustedTypes") or ()),
        )
        _apply(
            build.deployment(owner=owner, spec=spec, served=served, replicas=workload.replicas, settings=pods)
        )
    _apply(build.service(owner=owner, model=spec.model))
    _apply(build.disruption_budget(owner=owner, model=spec.model))
    gateway = spec.traffic.mode == TrafficMode.GATEWAY_API and obs.gateway_installed
    if gateway and plan.route is not None and spec.traffic.gateway is not None:
        for version, _ in plan.route:
            _apply(build.service(owner=owner, model=spec.model, version=version))
        parent = spec.traffic.gateway.parent_ref.to_wire()
        route = traffic.httproute(
            name=owner.name,
            namespace=owner.namespace,
            labels=build.selector(owner.name),
            parent=parent,
            port=build.SERVICE_PORT,
            backends=[(build.workload_name(owner.name, v), w) for v, w in plan.route],
        )
        route["metadata"]["ownerReferences"] = [owner_reference(owner)]
        _apply(route)
    _delete_others(owner=owner, keep=keep, gateway=gateway)
    _move_alias(obs, plan)
    _record_registry(obs, plan)


def _apply(manifest: Mapping[str, Any]) -> None:
    """Server-side apply under our field manager: idempotent, and a no-op when nothing changed."""
    meta = manifest["metadata"]
    kind, namespace, name = manifest["kind"], meta["namespace"], meta["name"]
    options = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": "application/apply-patch+yaml"}
    body = dict(manifest)
    if kind == "Deployment":
        kube.apps().patch_namespaced_deployment(name, namespace, body, **options)
    elif kind == "Service":
        kube.core().patch_namespaced_service(name, namespace, body, **options)
    elif kind == "PodDisruptionBudget":
        kubernetes.client.PolicyV1Api(kube.api_client()).patch_namespaced_pod_disruption_budget(
            name, namespace, body, **options
        )
    elif kind == "HTTPRoute":
        kube.custom_objects().patch_namespaced_custom_object(
            traffic.HTTPROUTE_GROUP,
            traffic.HTTPROUTE_VERSION,
            namespace,
            traffic.HTTPROUTE_PLURAL,
            name,
            body,
            **options,
        )
    else:
        raise ValueError(f"cannot apply a {kind}")


def _scale_only(*, namespace: str, name: str, replicas: int) -> None:
    """The ModelVersion of a served workload vanished: keep the pods, only follow the replica count."""
    with contextlib.suppress(kubernetes.client.ApiException):
        kube.apps().patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})


def _delete_others(*, owner: Owner, keep: set[str], gateway: bool) -> None:
    selector = f"{DEPLOYMENT_LABEL}={owner.name}"
    for workload in kube.apps().list_namespaced_deployment(owner.namespace, label_selector=selector).items:
        if workload.metadata.name not in keep and workload.metadata.deletion_timestamp is None:
            _log.info("deleting workload %s/%s", owner.namespace, workload.metadata.name)
            with contextlib.suppress(kubernetes.client.ApiException):
                kube.apps().delete_namespaced_deployment(
                    workload.metadata.name, owner.namespace, propagation_policy="Background"
                )
    if gateway:
        for svc in kube.core().list_namespaced_service(owner.namespace, label_selector=selector).items:
            if svc.metadata.name != owner.name and svc.metadata.name not in keep:
                with contextlib.suppress(kubernetes.client.ApiException):
                    kube.core().delete_namespaced_service(svc.metadata.name, owner.namespace)


def _patch_model_version(mv: Obj, status: Mapping[str, Any]) -> None:
    meta = mv["metadata"]
    kube.custom_objects().patch_namespaced_custom_object_status(
        MODEL_VERSION.group,
        MODEL_VERSION.version,
        meta["namespace"],
        MODEL_VERSION.plural,
        meta["name"],
        {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": dict(status)},
    )


def _move_alias(obs: _Observed, plan: canary.Plan) -> None:
    """`production` on the stable version, and on no other version of the model that this Deployment left.

    Checked every round, not only at the moment of promotion: a crash between the status
    write and the alias move is repaired by the next round.
    """
    stable = plan.status.stable
    if stable is None:
        return
    previous = {h.version for h in plan.status.history} - {stable.version}
    for number, mv in obs.versions.items():
        aliases = list((mv.get("status") or {}).get("aliases") or [])
        if number == stable.version and PRODUCTION not in aliases:
            _patch_alias(mv, [*aliases, PRODUCTION])
        elif (
            number != stable.version
            and number in previous
            and PRODUCTION in aliases
            and not _served_elsewhere(obs, number)
        ):
            _patch_alias(mv, [a for a in aliases if a != PRODUCTION])


def _patch_alias(mv: Obj, aliases: list[str]) -> None:
    try:
        _patch_model_version(mv, {"aliases": aliases})
    except kubernetes.client.ApiException as exc:
        if exc.status != HTTPStatus.CONFLICT:
            raise
        _log.info(
            "ModelVersion %s changed while moving the alias; next round retries", mv["metadata"]["name"]
        )


def _served_elsewhere(obs: _Observed, version: int) -> bool:
    """Another Deployment of the same model in the namespace serves ``version`` as stable."""
    meta = obs.obj["metadata"]
    for other in kube.list_objects(KIND, namespace=meta["namespace"]):
        if other["metadata"]["name"] == meta["name"] or other.get("spec", {}).get("model") != obs.spec.model:
            continue
        if ((other.get("status") or {}).get("stable") or {}).get("version") == version:
            return True
    return False


def _record_registry(obs: _Observed, plan: canary.Plan) -> None:
    """Append this Deployment's events to the ModelVersions' deployment history (best effort)."""
    by_name = {mv["metadata"]["name"]: mv for mv in obs.versions.values()}
    deployment = obs.obj["metadata"]["name"]
    stamp = _runtime.stamp(_runtime.now())
    for mv_name, event, message in plan.registry:
        mv = by_name.get(mv_name)
        if mv is None:
            continue
        fresh = kube.get_object(MODEL_VERSION, namespace=mv["metadata"]["namespace"], name=mv_name)
        history = list((fresh.get("status") or {}).get("deployments") or [])
        entry = {"deployment": deployment, "event": event, "time": stamp, "message": message[:1024]}
        try:
            _patch_model_version(fresh, {"deployments": [entry, *history][:50]})
        except kubernetes.client.ApiException as exc:
            _log.warning("cannot record %s on ModelVersion %s: %s", event, mv_name, exc.reason)


def _post_events(obj: Obj, events: list[Event]) -> None:
    meta = obj["metadata"]
    for event in events:
        _log.info("Deployment %s/%s: %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
        _runtime.post_event(obj, type_=event.type, reason=event.reason, message=event.message)


def _release_alias(body: Mapping[str, Any]) -> None:
    """A deleted Deployment no longer serves its stable version: drop `production` (best effort)."""
    meta = body.get("metadata", {})
    stable = ((body.get("status") or {}).get("stable") or {}).get("modelVersion")
    if not stable:
        return
    try:
        mv = kube.get_object(MODEL_VERSION, namespace=meta.get("namespace", ""), name=stable)
        aliases = list((mv.get("status") or {}).get("aliases") or [])
        if PRODUCTION in aliases:
            _patch_model_version(mv, {"aliases": [a for a in aliases if a != PRODUCTION]})
    except kubernetes.client.ApiException as exc:
        _log.info("cannot release the production alias of %s: %s", stable, exc.reason)
