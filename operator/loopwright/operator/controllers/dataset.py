"""Handlers of Dataset objects (loopwright.dev/v1alpha1).

A reconcile checks the source's cheap fingerprint; when it (or the spec) changed, a profiling
Job named after both computes the digest, statistics and anomalies, and the next reconcile
(woken by that Job's completion) reads its ``result.json`` into the status. Reconciles happen on
create/update/resume, when a profiling Job finishes, and every ``refreshInterval`` (a shared
clock reading the ``dataset_wake`` index, not a timer per object: see ``_runtime.Clock``).

The fingerprint is read with the credentials the profiling Job will use: those of
``spec.source.credentialsSecretRef`` (a Secret beside the Dataset, read by name) if set, else the
operator's own. The Job gets that Secret, else the operator's Secret name, which must then exist
in the Dataset's namespace (see ``loopwright.operator.builders.jobs``). A Secret that is missing or
unreadable, or credentials S3 refuses, leave Ready=False with the reason and a Warning Event;
the check is retried at the refresh interval (Secrets are not watched).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable, Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any, cast

import kopf
import kubernetes
from pydantic import ValidationError

from loopwright import storage
from loopwright.api.common import ConditionStatus, parse_duration
from loopwright.api.dataset import DatasetSpec, DatasetStatus, DataSource
from loopwright.api.kinds import DATASET as KIND
from loopwright.core import dataset as datasets
from loopwright.core.conditions import READY, Event, Verdict, merge
from loopwright.core.training.runs import job_outcome, termination_summary
from loopwright.operator import credentials, metrics
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import profiling_job
from loopwright.operator.controllers import _runtime
from loopwright.operator.controllers._common import INVALID_SPEC, parse_spec
from loopwright.operator.kube import MANAGED_BY, child_labels

DATASET_LABEL = f"{KIND.group}/{KIND.singular}"
CLOCK_PERIOD = 1.0


@kopf.index(group=KIND.group, version=KIND.version, plural=KIND.plural, id="dataset_info")
def dataset_info(namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> Any:
    """What a pipeline needs from its Dataset, without a GET per pipeline reconcile."""
    source = spec.get("source") or {}
    secret = (source.get("credentialsSecretRef") or {}).get("name")
    return {(namespace, name): {
        "validatedVersion": status.get("validatedVersion"),
        "uri": source.get("uri"),
        "format": source.get("format", "csv"),
        "schema": spec.get("schema"),
        "credentialsSecret": secret,
    }}


@kopf.index(group=KIND.group, version=KIND.version, plural=KIND.plural, id="dataset_wake")
def dataset_wake(namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> Any:
    """When each Dataset is next due for a fingerprint check."""
    checked = status.get("lastCheckedTime")
    try:
        interval = parse_duration(spec.get("refreshInterval", "5m"))
    except ValueError:
        return {(namespace, name): None}
    if not checked:
        return {(namespace, name): _runtime.now()}
    return {(namespace, name): datetime.fromisoformat(checked.replace("Z", "+00:00")) + interval}


@kopf.on.resume(group=KIND.group, version=KIND.version, plural=KIND.plural, id="dataset.reconcile")
@kopf.on.create(group=KIND.group, version=KIND.version, plural=KIND.plural, id="dataset.reconcile")
@kopf.on.update(group=KIND.group, version=KIND.version, plural=KIND.plural, id="dataset.reconcile",
                field="spec")
def reconcile(namespace: str | None, name: str, **_: Any) -> None:
    with metrics.reconcile(kind=KIND.kind, handler="reconcile"):
        sync(namespace=str(namespace), name=name)


@kopf.on.event(group="batch", version="v1", plural="jobs", id="dataset.job-event",
               labels={**MANAGED_BY, DATASET_LABEL: kopf.PRESENT})
def job_event(type: str, body: kopf.Body, namespace: str | None,
              labels: kopf.Labels, **_: Any) -> None:
    if type == "DELETED" or job_outcome(body).phase not in ("Succeeded", "Failed"):
        return
    with metrics.reconcile(kind=KIND.kind, handler="job-event"):
        sync(namespace=str(namespace), name=labels[DATASET_LABEL])


@kopf.on.startup(id="dataset.clock")
async def start_clock(memo: kopf.Memo, **kwargs: Any) -> None:
    async def fire(key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        await asyncio.to_thread(sync, namespace=namespace, name=name)

    clock = _runtime.Clock(period=CLOCK_PERIOD)
    memo.dataset_clock = asyncio.create_task(clock.run(kwargs["dataset_wake"], fire))


@kopf.on.cleanup(id="dataset.clock-stop")
async def stop_clock(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "dataset_clock", None)
    if task is not None:
        task.cancel()


def sync(*, namespace: str, name: str) -> None:
    """Bring one Dataset's status up to date with its source (safe to call from anywhere)."""
    with _runtime.hold((KIND.plural, namespace, name)):
        _runtime.retry_on_conflict(lambda: _sync_once(namespace=namespace, name=name))


def _sync_once(*, namespace: str, name: str) -> None:
    obj = _runtime.get(KIND, namespace=namespace, name=name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return
    generation = obj["metadata"].get("generation")
    current = obj.get("status") or {}
    try:
        status = DatasetStatus.model_validate(current)
    except ValidationError:
        status = DatasetStatus()
    now = _runtime.now()
    parsed = parse_spec(KIND, obj.get("spec") or {})
    if not isinstance(parsed, DatasetSpec):
        _publish(obj, {}, [Verdict(type=READY, status=False, reason=INVALID_SPEC, message=str(parsed))])
        return
    spec = parsed
    secret = spec.source.credentials_secret_ref
    try:
        fingerprint = storage.fingerprint(
            spec.source.uri, credentials=_source_credentials(namespace=namespace, source=spec.source))
    except (credentials.CredentialsError, storage.StorageError) as exc:
        failure = datasets.source_failure(exc, secret=secret.name if secret else None)
        _publish(obj, {"lastCheckedTime": _runtime.stamp(now)}, failure.verdicts, event=failure.event)
        return
    key = datasets.profile_key(fingerprint=fingerprint, spec=spec)
    if datasets.up_to_date(status, key=key):
        _publish(obj, {"lastCheckedTime": _runtime.stamp(now)}, [])
        return
    job_name = datasets.profile_job_name(name, key)
    prefix = datasets.output_prefix(bucket=_runtime.settings().artifact_bucket, namespace=namespace,
                                    dataset=name, key=key)
    job = _runtime.read_job(namespace=namespace, name=job_name)
    if job is None:
        manifest = profiling_job(
            namespace=namespace, name=job_name,
            owner=Owner(kind=KIND.kind, name=name, uid=obj["metadata"]["uid"], namespace=namespace),
            spec=spec, output_prefix=prefix, labels=child_labels(KIND, name),
            settings=_runtime.job_settings())
        _, created = _runtime.create_job(manifest)
        message = f"profiling the source (fingerprint {fingerprint[:12]}) with Job {job_name}"
        _publish(obj, {"lastCheckedTime": _runtime.stamp(now)},
                 [Verdict(type=datasets.VALIDATED, status=ConditionStatus.UNKNOWN, reason="Profiling",
                          message=message),
                  *([] if status.validated_version else
                    [Verdict(type=READY, status=False, reason="Profiling", message=message)])],
                 event=Event(type="Normal", reason="Profiling", message=message) if created else None)
        return
    outcome = job_outcome(job)
    if outcome.phase == "Failed":
        summary = termination_summary(_runtime.job_pods(job))
        detail = summary.get("message") or outcome.message
        message = f"profiling Job {job_name} failed ({outcome.reason}): {detail}"
        _publish(obj, {"lastCheckedTime": _runtime.stamp(now)},
                 [Verdict(type=datasets.VALIDATED, status=False, reason="ProfilingFailed", message=message),
                  Verdict(type=READY, status=False, reason="ProfilingFailed", message=message)],
                 event=Event(type="Warning", reason="ProfilingFailed", message=message))
        return
    if outcome.phase != "Succeeded":
        return
    try:
        result = json.loads(storage.get_bytes(storage.join_uri(prefix, "result.json")))
    except storage.StorageError as exc:
        # The artifact store is the operator's: read with its own credentials, whatever the source's.
        message = f"cannot read the profile result: {exc}"
        _publish(obj, {"lastCheckedTime": _runtime.stamp(now)},
                 [Verdict(type=READY, status=False, reason="ResultUnreadable", message=message)],
                 event=Event(type="Warning", reason="ResultUnreadable", message=message))
        return
    applied = datasets.apply_result(status, result, key=key, generation=generation, now=now)
    _publish(obj, applied.status, applied.verdicts)
    for event in applied.events:
        _runtime.post_event(obj, type_=event.type, reason=event.reason, message=event.message)


def _publish(
    obj: Mapping[str, Any],
    update: Mapping[str, Any],
    verdicts: list[Verdict],
    *,
    event: Event | None = None,
) -> None:
    """Write ``update`` and the verdicts as conditions (if that changes anything).

    ``event`` is posted only when a condition actually changes status or reason, so a state
    that persists across refreshes (a failed profile, a missing source) is reported once.
    """
    current = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    conditions = merge(current.get("conditions"), verdicts, generation=generation)
    if not any(c.get("type") == READY for c in conditions):
        conditions = merge(conditions, [Verdict(type=READY, status=False, reason="Checking",
                                                message="checking the source")], generation=generation)
    patch = {**update, "observedGeneration": generation, "conditions": conditions}
    if any(current.get(k) != v for k, v in patch.items()):
        _runtime.patch_status(KIND, obj, patch)
    changed = any(_runtime.condition_changed(current.get("conditions"), v) for v in verdicts)
    if event is not None and changed:
        _runtime.post_event(obj, type_=event.type, reason=event.reason, message=event.message)


def _source_credentials(*, namespace: str, source: DataSource) -> storage.Credentials | None:
    """The credentials the Dataset's owner granted for its source; None: the operator's own.

    The Secret is read on every check (by name; cheap next to the S3 calls it enables), so a
    rotated key is used at the next refresh; ``storage`` caches a bounded number of clients per
    key pair, so an unchanged Secret does not build a new client each time.
    """
    ref = source.credentials_secret_ref
    if ref is None:
        return None
    try:
        secret = _runtime.read_secret(namespace=namespace, name=ref.name)
    except kubernetes.client.ApiException as exc:
        if exc.status != HTTPStatus.FORBIDDEN:
            raise
        raise credentials.forbidden(name=ref.name, namespace=namespace) from exc
    return credentials.from_secret(secret, name=ref.name)
