"""Handlers of DriftPolicy objects (loopwright.dev/v1alpha1): watch live traffic, retrain on drift.

Two handlers. The reconcile (create/update/resume) validates the spec and
publishes Ready=False until the first check, so a broken spec is visible at
once. The check loop is one asyncio task per policy, started and
stopped by a watch handler. Not a kopf timer: the interval is a field of each
object's spec, and a timer's interval is fixed when the handler is registered.
Not a kopf daemon either: daemons add a finalizer, which would block deleting a
policy (or its namespace) while the operator is down. Every interval it:

1. finds the version the target Deployment serves as stable (its status) and
   that ModelVersion's training profile, the reference (a new stable version,
   i.e. a promotion, starts a new window and a new consecutive count);
2. scrapes the reference-bin counters of the ready predictor pods of that
   version (:mod:`loopwright.operator.probes.scrape`) into the window (:mod:`loopwright.core.drift.window`);
3. follows the retrain it requested before, if one is in flight (the run, the
   version's gate, its rollout: :mod:`loopwright.core.drift.retrain`, pure);
4. judges the window (:mod:`loopwright.core.drift.check`, pure), writes the status
   with the raw values, and acts: an Event on every confirmed change, a retrain
   of the referenced TrainingPipeline (its train-request and train-trigger
   annotations) unless one is in flight, found no new data, or its cooldown
   runs, and the optional webhook.

All Kubernetes calls are blocking client calls moved off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, cast

import kopf
import kubernetes

from loopwright import storage
from loopwright.api.common import parse_duration
from loopwright.api.driftpolicy import DriftPolicySpec, RetrainOutcome, RetrainPhase, RetrainStatus
from loopwright.api.kinds import DEPLOYMENT, MODEL_VERSION
from loopwright.api.kinds import DRIFT_POLICY as KIND
from loopwright.api.labels import DEPLOYMENT_LABEL, VERSION_LABEL
from loopwright.core.conditions import READY, Verdict, merge
from loopwright.core.drift import check
from loopwright.core.drift import retrain as retrains
from loopwright.core.drift.window import PodReading, Window, counters
from loopwright.core.exposition import PodTarget
from loopwright.core.profile import Profile
from loopwright.operator import kube, metrics
from loopwright.operator.controllers import _retrain, _runtime
from loopwright.operator.controllers._common import INVALID_SPEC, parse_spec, ready_status
from loopwright.operator.probes import scrape, webhook
from loopwright.reports import drift as drift_report
from loopwright.reports import html

DEFAULT_PORT = 8080
SCRAPE_TIMEOUT = 5.0
RETRY_SECONDS = 30.0
"""Pause after a check that could not run (nothing served yet, API errors), bounded by the interval."""
RECHECK_SECONDS = 1.0
"""Pause after a check whose spec changed while it ran: the new spec is judged almost at once."""

_log = logging.getLogger(__name__)


@kopf.on.resume(group=KIND.group, version=KIND.version, plural=KIND.plural, id="driftpolicy.reconcile")
@kopf.on.create(group=KIND.group, version=KIND.version, plural=KIND.plural, id="driftpolicy.reconcile")
@kopf.on.update(group=KIND.group, version=KIND.version, plural=KIND.plural, id="driftpolicy.reconcile")
def reconcile(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, body: kopf.Body, **_: Any) -> None:
    with metrics.reconcile(kind=KIND.kind, handler="reconcile"):
        parsed = parse_spec(KIND, spec)
        if isinstance(parsed, str):
            verdict = Verdict(type=READY, status=False, reason=INVALID_SPEC, message=parsed)
        elif status.get("lastCheckTime"):
            return  # the check loop owns Ready once it has run
        else:
            verdict = Verdict(type=READY, status=False, reason="Pending",
                              message="waiting for the first check")
        # Guarded by resourceVersion, as the check loop's writes are: the loop starts on the same
        # event, and a Pending written over its first check would erase that check's conditions.
        try:
            _runtime.patch_status(KIND, body, ready_status(status=status, generation=meta.get("generation"),
                                                           verdict=verdict))
        except _runtime.ConflictError as exc:
            raise kopf.TemporaryError(f"{exc}; deciding again on the new version", delay=1) from exc


@kopf.on.startup(id="driftpolicy.startup")
async def _start(memo: Any, **_: Any) -> None:
    memo.driftpolicy_loops = {}


@kopf.on.cleanup(id="driftpolicy.cleanup")
async def _stop(memo: Any, **_: Any) -> None:
    loops: dict[tuple[str, str], asyncio.Task[None]] = getattr(memo, "driftpolicy_loops", {})
    for task in loops.values():
        task.cancel()
    await asyncio.gather(*loops.values(), return_exceptions=True)
    loops.clear()


@kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural, id="driftpolicy.watch")
async def _on_event(
    *, event: Mapping[str, Any], body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    """Start a policy's check loop when it appears, stop it when it goes.

    A watch handler, not a kopf daemon: daemons put a finalizer on every object, so
    deleting a DriftPolicy (or its namespace) would hang while the operator is down.
    """
    loops: dict[tuple[str, str], asyncio.Task[None]] | None = getattr(memo, "driftpolicy_loops", None)
    if loops is None:
        return
    meta = body.get("metadata", {})
    key = (meta.get("namespace", ""), meta.get("name", ""))
    gone = event.get("type") == "DELETED" or meta.get("deletionTimestamp") is not None
    task = loops.get(key)
    if gone:
        if task is not None:
            task.cancel()
            del loops[key]
    elif task is None or task.done():
        loops[key] = asyncio.get_running_loop().create_task(
            _loop(namespace=key[0], name=key[1], logger=logger), name=f"driftpolicy {key[0]}/{key[1]}")


async def _loop(*, namespace: str, name: str, logger: kopf.Logger) -> None:
    """Check, act, sleep the spec's interval; until the policy is deleted or the operator stops."""
    state = _State()
    while True:
        try:
            with metrics.reconcile(kind=KIND.kind, handler="check"):
                delay = await _check(namespace=namespace, name=name, state=state, logger=logger)
        except kubernetes.client.ApiException as exc:
            if exc.status == HTTPStatus.NOT_FOUND:
                return  # the policy itself is gone
            logger.warning("drift check failed: API error %s %s; retrying", exc.status, exc.reason)
            delay = RETRY_SECONDS
        except Exception:
            # A failed check must not end the loop: the window would be lost with it.
            logger.exception("drift check failed; retrying in %.0fs", RETRY_SECONDS)
            delay = RETRY_SECONDS
        await asyncio.sleep(delay)


@dataclass
class _State:
    """What a policy's loop keeps between checks: the window and the reference profile."""

    window: Window | None = None
    profile_key: tuple[str, str | None] | None = None
    profile: Profile | None = None
    requested: str | None = None
    """The last retrain token known to be on the pipeline (so it is not written again every check)."""


@dataclass(frozen=True, kw_only=True)
class _Served:
    deployment: str
    model: str
    version: int
    model_version: str
    reference_metrics: dict[str, float]
    profile_uri: str
    profile_sha256: str | None
    rollout: retrains.Rollout


async def _check(*, namespace: str, name: str, state: _State, logger: kopf.Logger) -> float:
    """One check; returns the seconds to wait before the next."""
    obj = await asyncio.to_thread(kube.get_object, KIND, namespace=namespace, name=name)
    body = kopf.Body(cast(kopf.RawBody, obj))  # what kopf.event needs to refer to the policy
    status: Mapping[str, Any] = obj.get("status") or {}
    parsed = parse_spec(KIND, obj.get("spec") or {})
    if isinstance(parsed, str):
        return RETRY_SECONDS  # the reconcile reports it
    assert isinstance(parsed, DriftPolicySpec)
    spec = parsed
    interval = parse_duration(spec.interval).total_seconds()
    now = datetime.now(UTC)

    async def not_ready(reason: str, message: str) -> float:
        verdict = Verdict(type=READY, status=False, reason=reason, message=message)
        await _patch(obj, fields={}, verdicts=[verdict])
        return min(interval, RETRY_SECONDS)

    served = await asyncio.to_thread(_served, namespace=namespace, deployment=spec.deployment_ref.name)
    if isinstance(served, str):
        return await not_ready("NotServing", served)
    try:
        profile = await _profile(state, served)
    except (storage.StorageError, ValueError) as exc:
        return await not_ready("ProfileUnavailable", f"{served.model_version}: {exc}")

    span = parse_duration(spec.window)
    window = state.window
    if window is None or window.reference != served.model_version or window.span != span:
        window = state.window = Window(reference=served.model_version, span=span, start=now)
        logger.info("drift window starts for %s (reference %s)", served.deployment, served.model_version)
    same_reference = status.get("modelVersion") == served.model_version
    existing = list(status.get("conditions") or ())
    if not same_reference:
        # Verdicts against the previous version no longer apply: they start again as Unknown.
        stale = (check.DRIFT_DETECTED, check.PERFORMANCE_DEGRADED)
        existing = [c for c in existing if c.get("type") not in stale]
        if status.get("modelVersion"):
            kopf.event(body, type="Normal", reason="ReferenceChanged",
                       message=f"{served.deployment} now serves {served.model_version} (was "
                               f"{status['modelVersion']}): new reference profile, the window starts empty")
    performance = status.get("performance") or {}
    retrain = spec.actions.retrain
    before = _retrain_status(status)
    advanced, pipeline = before, None
    if before is not None and before.phase != RetrainPhase.SETTLED:
        progress, pipeline = await asyncio.to_thread(_retrain.observe, namespace=namespace, retrain=before,
                                                     rollout=served.rollout)
        advanced = retrains.advance(before, progress, now=now)
    current = advanced
    dataset_version = None
    if current is not None and current.outcome == RetrainOutcome.NO_NEW_DATA and retrain is not None:
        dataset_version = await asyncio.to_thread(_retrain.dataset_version, namespace=namespace,
                                                  pipeline=retrain.pipeline_ref.name)
    previous = check.Previous(
        consecutive=int(status.get("consecutive") or 0) if same_reference else 0,
        performance_consecutive=int(performance.get("consecutive") or 0) if same_reference else 0,
        last_retrain=_parse_time(status.get("lastRetrainTime")), retrain=current,
        dataset_version=dataset_version,
    )

    readings, unreachable = await _read_pods(namespace=namespace, served=served)
    window.observe(readings, now=now)
    counts = window.counts(now=now)
    outcome = check.evaluate(spec, profile=profile, counts=counts,
                             reference_metrics=served.reference_metrics, previous=previous, now=now)

    # The retrain is recorded in the status first, then requested: a crash in between leaves an
    # intent that the next check completes (same token, so still one run), never a second request.
    token = f"{name}-{int(now.timestamp())}" if outcome.retrain is not None and retrain is not None else None
    if token is not None and retrain is not None and outcome.retrain is not None:
        current = retrains.requested(token=token, pipeline=retrain.pipeline_ref.name, trigger=outcome.retrain,
                                     now=now)
    report_uri = None
    if outcome.drifted is not None:  # a verdict: its report, written before the status points at it
        asked = ({"pipeline": retrain.pipeline_ref.name, "token": token, "trigger": str(outcome.retrain)}
                 if token and retrain is not None else None)
        data = drift_report.build(spec=spec, outcome=outcome, profile=profile, counts=counts, policy=name,
                                  namespace=namespace, deployment=served.deployment,
                                  model_version=served.model_version, time=now, retrain=asked)
        report_uri = await _write_report(body, data=data, uri=drift_report.report_uri(
            bucket=_runtime.settings().artifact_bucket, namespace=namespace, model=served.model, policy=name,
            time=now))
    fields = check.status(outcome, reference=served.model_version, now=now, retrain_token=token,
                          retrain_trigger=outcome.retrain, report_uri=report_uri,
                          previous_checks=status.get("checks") or (), retrain=current)
    verdicts = [*check.conditions(spec, outcome, existing=existing),
                retrains.verdict(current, wanted=outcome.wanted is not None, held=outcome.held)]
    if unreachable:
        # Not a failure of the check (reachable pods were counted), but worth seeing.
        verdicts[0] = Verdict(type=READY, status=True, reason="Checked",
                              message=f"{verdicts[0].message}; unreachable: {'; '.join(unreachable)}"[:1000])
    if not await _patch(obj, fields=fields, verdicts=verdicts):
        # The spec changed under this check: nothing it decided was recorded, so it does not act
        # (a retrain requested without its token in the status could be requested twice).
        return RECHECK_SECONDS

    _settled_event(body, before, advanced)
    retrain_note = await _request(body, state=state, namespace=namespace, policy=name, retrain=current,
                                  new=token is not None, pipeline=None if token else pipeline)
    if not retrain_note and outcome.held is not None:
        retrain_note = f"retrain held back: {outcome.held.message}"

    line = check.summary(spec, outcome)
    for change in outcome.changes:
        bad = change in (check.Change.DRIFT_CONFIRMED, check.Change.PERFORMANCE_CONFIRMED)
        message = f"{served.model_version}: {line}" + (f"; {retrain_note}" if retrain_note else "")
        kopf.event(body, type="Warning" if bad else "Normal", reason=change.value, message=message[:1000])
    if spec.actions.webhook is not None and (outcome.changes or token):
        event = outcome.changes[0].value if outcome.changes else "RetrainRequested"
        await _notify(body, spec=spec, namespace=namespace, name=name, served=served,
                      event=event, message=f"{line}; {retrain_note}".rstrip("; "), fields=fields)
    logger.debug("drift check of %s: %s", served.model_version, line)
    return interval


def _served(*, namespace: str, deployment: str) -> _Served | str:
    """What the Deployment serves as stable and that version's reference; a reason string if nothing."""
    try:
        mld = kube.get_object(DEPLOYMENT, namespace=namespace, name=deployment)
    except kubernetes.client.ApiException as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return f"Deployment {deployment} (mldeploy) not found"
        raise
    stable = (mld.get("status") or {}).get("stable") or {}
    mv_name, version = stable.get("modelVersion"), stable.get("version")
    if not mv_name or not version:
        return f"Deployment {deployment} serves no stable version yet"
    try:
        mv = kube.get_object(MODEL_VERSION, namespace=namespace, name=mv_name)
    except kubernetes.client.ApiException as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return f"ModelVersion {mv_name}, served by {deployment}, not found"
        raise
    spec = mv.get("spec") or {}
    if not spec.get("profileUri"):
        return f"ModelVersion {mv_name} has no profileUri: there is no reference to compare with"
    return _Served(deployment=deployment, model=str(spec.get("model") or ""), version=int(version),
                   model_version=mv_name,
                   reference_metrics={k: float(v) for k, v in (spec.get("metrics") or {}).items()},
                   profile_uri=spec["profileUri"], profile_sha256=spec.get("profileSha256"),
                   rollout=_retrain.rollout(mld))


async def _profile(state: _State, served: _Served) -> Profile:
    """The reference profile, downloaded (sha256-checked) once per ModelVersion."""
    key = (served.profile_uri, served.profile_sha256)
    if state.profile is None or state.profile_key != key:
        data = await asyncio.to_thread(storage.get_bytes, served.profile_uri, sha256=served.profile_sha256)
        state.profile = Profile.model_validate_json(data)
        state.profile_key = key
    return state.profile


async def _read_pods(*, namespace: str, served: _Served) -> tuple[list[PodReading], list[str]]:
    """Counters of every ready predictor pod of the served version, and why others could not be read."""
    selector = f"{DEPLOYMENT_LABEL}={served.deployment},{VERSION_LABEL}={served.version}"
    pods = (await asyncio.to_thread(kube.core().list_namespaced_pod, namespace,
                                    label_selector=selector)).items
    by_port: dict[int, list[tuple[PodTarget, datetime | None]]] = {}
    for pod in pods:
        target = scrape.pod_target(pod, version_label=VERSION_LABEL)
        if target is not None:
            by_port.setdefault(_port(pod), []).append((target, pod.status.start_time))
    readings: list[PodReading] = []
    unreachable: list[str] = []
    for port, targets in by_port.items():
        started = {t.uid: s for t, s in targets}
        results = await scrape.fetch_pod_metrics(pods=[t for t, _ in targets], port=port,
                                                 timeout=SCRAPE_TIMEOUT)
        for uid, result in results.items():
            if result.ok:
                readings.append(PodReading(uid=uid, counters=counters(result.samples), started=started[uid]))
            else:
                unreachable.append(f"{result.pod.name}: {result.error}")
    return readings, unreachable


def _port(pod: Any) -> int:
    """The predictor's port: the container port named http, else the first one, else 8080."""
    ports = [p for c in pod.spec.containers or () for p in c.ports or ()]
    named = [p for p in ports if p.name == "http"]
    return int((named or ports)[0].container_port) if ports else DEFAULT_PORT


async def _write_report(body: kopf.Body, *, data: Mapping[str, Any], uri: str) -> str | None:
    """Write a check's report (HTML and its JSON twin); None, with a Warning Event, if S3 refuses."""
    def put() -> None:
        storage.put_bytes(html.json_twin(uri), json.dumps(data, sort_keys=True).encode())
        storage.put_bytes(uri, drift_report.render(data).encode())

    try:
        await asyncio.to_thread(put)
    except storage.StorageError as exc:
        kopf.event(body, type="Warning", reason="ReportFailed",
                   message=f"cannot write the drift report {uri}: {exc}"[:1000])
        return None
    return uri


def _retrain_status(status: Mapping[str, Any]) -> RetrainStatus | None:
    try:
        return RetrainStatus.model_validate(status["retrain"]) if status.get("retrain") else None
    except ValueError:
        return None


def _settled_event(body: kopf.Body, before: RetrainStatus | None, after: RetrainStatus | None) -> None:
    """An Event when the retrain in flight settles (how, and what it means for the next one)."""
    if before is None or after is None or before.phase == RetrainPhase.SETTLED:
        return
    if after.phase != RetrainPhase.SETTLED:
        return
    good = after.outcome in (RetrainOutcome.PROMOTED, RetrainOutcome.SUPERSEDED)
    kopf.event(body, type="Normal" if good else "Warning", reason="RetrainSettled",
               message=f"{after.trigger} retrain {after.token}: {after.outcome}: {after.message}"[:1000])


async def _request(
    body: kopf.Body, *, state: _State, namespace: str, policy: str, retrain: RetrainStatus | None, new: bool,
    pipeline: Mapping[str, Any] | None,
) -> str:
    """Put the retrain's request on its pipeline while no run answers it yet; a note for the Events."""
    if (retrain is None or retrain.phase != RetrainPhase.AWAITING_RUN or retrain.run is not None
            or retrain.token == state.requested):
        return ""
    try:
        await asyncio.to_thread(_retrain.ensure_requested, namespace=namespace, pipeline=retrain.pipeline,
                                policy=policy, token=retrain.token, trigger=retrain.trigger, obj=pipeline)
    except kubernetes.client.ApiException as exc:
        if new:
            kopf.event(body, type="Warning", reason="RetrainFailed",
                       message=f"could not request a run of TrainingPipeline {retrain.pipeline}: "
                               f"{exc.status} {exc.reason}; retrying at the next check")
        return ""
    state.requested = retrain.token
    if not new:
        return ""
    note = f"requested run {retrain.token} of TrainingPipeline {retrain.pipeline} (trigger {retrain.trigger})"
    kopf.event(body, type="Normal", reason="RetrainRequested", message=note)
    return note


async def _patch(checked: Mapping[str, Any], *, fields: Mapping[str, Any], verdicts: list[Verdict]) -> bool:
    return await asyncio.to_thread(_write_status, checked, fields=fields, verdicts=verdicts)


def _write_status(checked: Mapping[str, Any], *, fields: Mapping[str, Any], verdicts: list[Verdict],
                  attempts: int = 5) -> bool:
    """Publish a check's results on the policy it read (`checked`), guarded by resourceVersion;
    False when they were dropped.

    A merge patch replaces the whole conditions list, so conditions merged on a stale read would
    erase what was written since (the reconcile's Pending or InvalidSpec). On a conflict the
    verdicts are merged into the fresh conditions; a new generation drops the write instead, since
    this check judged the old spec and the next one judges the new.
    """
    generation = checked["metadata"].get("generation")
    current: Mapping[str, Any] | None = checked
    for _ in range(attempts):
        if current is None or current["metadata"].get("generation") != generation:
            return False
        conditions = merge((current.get("status") or {}).get("conditions"), verdicts, generation=generation)
        try:
            _runtime.patch_status(KIND, current, {**fields, "observedGeneration": generation,
                                                  "conditions": conditions})
            return True
        except _runtime.ConflictError:
            meta = checked["metadata"]
            current = _runtime.get(KIND, namespace=meta["namespace"], name=meta["name"])
    raise _runtime.ConflictError(f"{KIND.kind} {checked['metadata']['name']}: kept changing while publishing")


async def _notify(
    body: kopf.Body, *, spec: DriftPolicySpec, namespace: str, name: str, served: _Served,
    event: str, message: str, fields: Mapping[str, Any],
) -> None:
    target = spec.actions.webhook
    assert target is not None
    token = None
    if target.secret_ref is not None:
        try:
            token = await asyncio.to_thread(_secret_value, namespace=namespace, name=target.secret_ref.name,
                                            key=target.secret_ref.key)
        except (kubernetes.client.ApiException, KeyError) as exc:
            kopf.event(body, type="Warning", reason="WebhookFailed",
                       message=f"cannot read Secret {target.secret_ref.name} key {target.secret_ref.key}: "
                               f"{type(exc).__name__}")
            return
    payload = webhook.payload(namespace=namespace, policy=name, deployment=served.deployment,
                             model_version=served.model_version, event=event, message=message, status=fields)
    start = time.monotonic()
    delivery = await webhook.post(url=target.url, payload=payload, token=token, format=target.format,
                                  policy=_runtime.settings().egress)
    if not delivery.ok:
        kopf.event(body, type="Warning", reason="WebhookFailed",
                   message=f"POST {target.url} {delivery.describe()} after {time.monotonic() - start:.1f}s")


def _secret_value(*, namespace: str, name: str, key: str) -> str:
    secret = kube.core().read_namespaced_secret(name, namespace)
    return base64.b64decode((secret.data or {})[key]).decode().strip()


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
