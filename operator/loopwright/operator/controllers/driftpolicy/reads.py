"""What a drift check reads and writes besides its own status: the served version and its reference
profile, the predictor pods' counters, the report, the retrain request, the webhook."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopwright import storage
from loopwright.api.deployment import LATEST
from loopwright.api.driftpolicy import DriftPolicySpec
from loopwright.api.kinds import DEPLOYMENT, MODEL_VERSION, TRAINING_PIPELINE
from loopwright.api.labels import DEPLOYMENT_LABEL, VERSION_LABEL
from loopwright.api.pipeline import TRAIN_REQUEST_ANNOTATION, RunTrigger
from loopwright.core.drift.retrain import Rollout
from loopwright.core.drift.window import PodReading, Window, counters
from loopwright.core.exposition import PodTarget
from loopwright.core.profile import Profile
from loopwright.core.training.triggers import TRAIN_TRIGGER_ANNOTATION
from loopwright.operator.probes import scrape, webhook
from loopwright.operator.runtime.client import PODS, SECRETS, ApiError, Obj, resource
from loopwright.operator.runtime.controller import Context
from loopwright.reports import drift as drift_report
from loopwright.reports import html

DEPLOYMENTS = resource(DEPLOYMENT)
MODEL_VERSIONS = resource(MODEL_VERSION)
PIPELINES = resource(TRAINING_PIPELINE)
DEFAULT_PORT = 8080
SCRAPE_TIMEOUT = 5.0


@dataclass
class State:
    """What a policy keeps between checks: the window and the reference profile."""

    window: Window | None = None
    profile_key: tuple[str, str | None] | None = None
    profile: Profile | None = None
    requested: str | None = None
    """The last retrain token known to be on the pipeline (so it is not read again every check)."""


@dataclass(frozen=True, kw_only=True)
class Served:
    deployment: str
    model: str
    version: int
    model_version: str
    reference_metrics: dict[str, float]
    profile_uri: str
    profile_sha256: str | None
    rollout: Rollout


def rollout(deployment: Mapping[str, Any]) -> Rollout:
    """What a loopwright Deployment says about its versions."""
    status = deployment.get("status") or {}
    history: dict[int, str] = {}
    for entry in status.get("history") or ():  # newest first: the first entry of a version is its latest
        history.setdefault(int(entry.get("version") or 0), str(entry.get("event") or ""))

    def version(key: str) -> int | None:
        value = (status.get(key) or {}).get("version")
        return int(value) if value else None

    return Rollout(stable=version("stable"), canary=version("canary"), queued=version("queued"),
                   rejected=frozenset(int(v) for v in status.get("rejectedVersions") or ()), history=history,
                   follows_latest=str((deployment.get("spec") or {}).get("version", LATEST)) == LATEST)


async def served(ctx: Context, *, namespace: str, deployment: str) -> Served | str:
    """What the Deployment serves as stable and that version's reference; a reason string if nothing."""
    mld = await ctx.api.get(DEPLOYMENTS, namespace, deployment)
    if mld is None:
        return f"Deployment {deployment} (mldeploy) not found"
    stable = (mld.get("status") or {}).get("stable") or {}
    mv_name, version = stable.get("modelVersion"), stable.get("version")
    if not mv_name or not version:
        return f"Deployment {deployment} serves no stable version yet"
    mv = await ctx.api.get(MODEL_VERSIONS, namespace, mv_name)
    if mv is None:
        return f"ModelVersion {mv_name}, served by {deployment}, not found"
    spec = mv.get("spec") or {}
    if not spec.get("profileUri"):
        return f"ModelVersion {mv_name} has no profileUri: there is no reference to compare with"
    return Served(deployment=deployment, model=str(spec.get("model") or ""), version=int(version),
                  model_version=mv_name,
                  reference_metrics={k: float(v) for k, v in (spec.get("metrics") or {}).items()},
                  profile_uri=spec["profileUri"], profile_sha256=spec.get("profileSha256"),
                  rollout=rollout(mld))


async def profile(state: State, served: Served) -> Profile:
    """The reference profile, downloaded (sha256-checked) once per ModelVersion."""
    key = (served.profile_uri, served.profile_sha256)
    if state.profile is None or state.profile_key != key:
        data = await asyncio.to_thread(storage.get_bytes, served.profile_uri, sha256=served.profile_sha256)
        state.profile = Profile.model_validate_json(data)
        state.profile_key = key
    return state.profile


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


async def read_pods(ctx: Context, *, namespace: str, served: Served) -> tuple[list[PodReading], list[str]]:
    """Counters of every ready predictor pod of the served version, and why others could not be read."""
    selector = f"{DEPLOYMENT_LABEL}={served.deployment},{VERSION_LABEL}={served.version}"
    by_port: dict[int, list[tuple[PodTarget, datetime | None]]] = {}
    for pod in await ctx.api.list(PODS, namespace, selector=selector):
        target = scrape.pod_target(pod, version_label=VERSION_LABEL)
        if target is not None:
            began = _time((pod.get("status") or {}).get("startTime"))
            by_port.setdefault(port(pod), []).append((target, began))
    readings: list[PodReading] = []
    unreachable: list[str] = []
    for number, targets in by_port.items():
        started = {t.uid: s for t, s in targets}
        results = await scrape.fetch_pod_metrics(pods=[t for t, _ in targets], port=number,
                                                 timeout=SCRAPE_TIMEOUT)
        for uid, result in results.items():
            if result.ok:
                readings.append(PodReading(uid=uid, counters=counters(result.samples), started=started[uid]))
            else:
                unreachable.append(f"{result.pod.name}: {result.error}")
    return readings, unreachable


def port(pod: Mapping[str, Any]) -> int:
    """The predictor's port: the container port named http, else the first one, else 8080."""
    ports = [p for c in (pod.get("spec") or {}).get("containers") or () for p in c.get("ports") or ()]
    named = [p for p in ports if p.get("name") == "http"]
    return int((named or ports)[0]["containerPort"]) if ports else DEFAULT_PORT


async def write_report(ctx: Context, obj: Obj, *, data: Mapping[str, Any], uri: str) -> str | None:
    """Write a check's report (HTML and its JSON twin); None, with a Warning Event, if S3 refuses."""
    def put() -> None:
        storage.put_bytes(html.json_twin(uri), json.dumps(data, sort_keys=True).encode())
        storage.put_bytes(uri, drift_report.render(data).encode())

    try:
        await asyncio.to_thread(put)
    except storage.StorageError as exc:
        await ctx.events.record(obj, type_="Warning", reason="ReportFailed",
                                message=f"cannot write the drift report {uri}: {exc}"[:1000])
        return None
    return uri


async def ensure_requested(ctx: Context, *, namespace: str, pipeline: str, policy: str, token: str,
                           trigger: RunTrigger, obj: Mapping[str, Any] | None = None) -> None:
    """Make the pipeline carry this request (CONTRACTS: a new token is one run); idempotent.

    Nothing is written when the pipeline already has the token (set or handled), or carries
    a request this policy did not make or made later: that request is as good as ours, and
    overwriting it would cancel someone else's run (the run answering it answers ours too). ``obj``:
    the pipeline as just read, if it was.
    """
    obj = obj if obj is not None else await ctx.api.get(PIPELINES, namespace, pipeline)
    if obj is None:
        raise ApiError(404, "Not Found", f"TrainingPipeline {pipeline} not found")
    current = (obj["metadata"].get("annotations") or {}).get(TRAIN_REQUEST_ANNOTATION)
    handled = (obj.get("status") or {}).get("handledTrainRequest")
    if token in (current, handled) or (current and not older_request(current, policy=policy, than=token)):
        return
    await ctx.api.patch(PIPELINES, namespace, pipeline, {"metadata": {"annotations": {
        TRAIN_REQUEST_ANNOTATION: token, TRAIN_TRIGGER_ANNOTATION: RunTrigger(trigger).value}}})


def older_request(current: str, *, policy: str, than: str) -> bool:
    """Whether ``current`` is an earlier token of this policy (``<policy>-<unix seconds>``)."""
    prefix = f"{policy}-"
    stamp, ours = current.removeprefix(prefix), than.removeprefix(prefix)
    return current.startswith(prefix) and stamp.isdigit() and ours.isdigit() and int(stamp) < int(ours)


async def notify(ctx: Context, obj: Obj, *, spec: DriftPolicySpec, served: Served, event: str, message: str,
                 fields: Mapping[str, Any]) -> None:
    """POST the optional webhook (a Warning Event when it cannot be delivered)."""
    target = spec.actions.webhook
    assert target is not None
    meta = obj["metadata"]
    token = None
    if target.secret_ref is not None:
        ref = target.secret_ref
        try:
            secret = await ctx.api.get(SECRETS, meta["namespace"], ref.name)
            token = base64.b64decode(((secret or {}).get("data") or {})[ref.key]).decode().strip()
        except (ApiError, KeyError) as exc:
            await ctx.events.record(obj, type_="Warning", reason="WebhookFailed",
                                    message=f"cannot read Secret {ref.name} key {ref.key}: "
                                            f"{type(exc).__name__}")
            return
    payload = webhook.payload(namespace=meta["namespace"], policy=meta["name"], deployment=served.deployment,
                              model_version=served.model_version, event=event, message=message, status=fields)
    start = time.monotonic()
    delivery = await webhook.post(url=target.url, payload=payload, token=token, format=target.format,
                                  policy=ctx.config.egress)
    if not delivery.ok:
        await ctx.events.record(obj, type_="Warning", reason="WebhookFailed",
                                message=f"POST {target.url} {delivery.describe()} after "
                                        f"{time.monotonic() - start:.1f}s")
