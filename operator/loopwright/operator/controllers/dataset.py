"""The Dataset controller (loopwright.dev/v1alpha1).

A reconcile checks the source's cheap fingerprint; when it (or the spec) changed, a profiling
Job named after both computes the digest, statistics and anomalies, and the next reconcile
(woken by that Job's completion) reads its ``result.json`` into the status. Reconciles happen on
changes of the Dataset, when a profiling Job finishes, and every ``refreshInterval`` (the result
of each reconcile asks the queue to come back then: no timer per object, no finalizer).

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
from http import HTTPStatus
from typing import Any

import kopf
from pydantic import ValidationError

from loopwright import storage
from loopwright.api import reasons
from loopwright.api.common import ConditionStatus, parse_duration
from loopwright.api.dataset import DatasetSpec, DatasetStatus, DataSource
from loopwright.api.kinds import DATASET as KIND
from loopwright.api.labels import MANAGED_BY, child_labels
from loopwright.core import dataset as datasets
from loopwright.core.conditions import READY, Event, Verdict
from loopwright.core.training.runs import job_outcome, termination_summary
from loopwright.operator import credentials
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import JobSettings, profiling_job
from loopwright.operator.controllers._common import job_pods, now, parse_spec, publish, stamp
from loopwright.operator.runtime.client import JOBS, SECRETS, ApiError, Obj, resource
from loopwright.operator.runtime.controller import MANAGER, Context, Key
from loopwright.operator.runtime.queue import Result
from loopwright.operator.runtime.status import Decision

RES = resource(KIND)
DATASET_LABEL = f"{KIND.group}/{KIND.singular}"
CHECKING = Verdict(type=READY, status=False, reason=reasons.CHECKING, message="checking the source")


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


class Datasets:
    kind = KIND.kind
    workers = 4

    async def reconcile(self, ctx: Context, key: Key) -> Result:
        obj = await ctx.api.get(RES, *key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return Result()
        parsed = parse_spec(KIND, obj.get("spec") or {})
        if not isinstance(parsed, DatasetSpec):
            await _publish(ctx, obj, {}, [Verdict(type=READY, status=False, reason=reasons.INVALID_SPEC,
                                                  message=str(parsed))])
            return Result()
        await _check(ctx, obj, parsed)
        return Result(requeue_after=parse_duration(parsed.refresh_interval).total_seconds())


MANAGER.register(Datasets())
watch = kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural,
                      id="dataset.watch")(MANAGER.watcher(KIND.kind))


@kopf.on.event(group="batch", version="v1", plural="jobs", id="dataset.job-event",
               labels={**MANAGED_BY, DATASET_LABEL: kopf.PRESENT})
async def job_event(type: str, body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    if type != "DELETED" and job_outcome(body).phase in ("Succeeded", "Failed"):
        MANAGER.enqueue(KIND.kind, (namespace, labels[DATASET_LABEL]))


async def _check(ctx: Context, obj: Obj, spec: DatasetSpec) -> None:
    """Bring one Dataset's status up to date with its source."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        status = DatasetStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = DatasetStatus()
    moment = now()
    checked = {"lastCheckedTime": stamp(moment)}
    secret = spec.source.credentials_secret_ref
    try:
        source = await _source_credentials(ctx, namespace=namespace, source=spec.source)
        fingerprint = await asyncio.to_thread(storage.fingerprint, spec.source.uri, credentials=source)
    except (credentials.CredentialsError, storage.StorageError) as exc:
        failure = datasets.source_failure(exc, secret=secret.name if secret else None)
        await _publish(ctx, obj, checked, failure.verdicts, event=failure.event)
        return
    key = datasets.profile_key(fingerprint=fingerprint, spec=spec)
    if datasets.up_to_date(status, key=key):
        await _publish(ctx, obj, checked, [])
        return
    job_name = datasets.profile_job_name(name, key)
    prefix = datasets.output_prefix(bucket=ctx.config.artifact_bucket, namespace=namespace, dataset=name,
                                    key=key)
    job = await ctx.api.get(JOBS, namespace, job_name)
    if job is None:
        manifest = profiling_job(
            namespace=namespace, name=job_name,
            owner=Owner(kind=KIND.kind, name=name, uid=meta["uid"], namespace=namespace),
            spec=spec, output_prefix=prefix, labels=child_labels(KIND, name),
            settings=JobSettings.of(ctx.config))
        _, created = await ctx.api.create_or_adopt(JOBS, manifest)
        message = f"profiling the source (fingerprint {fingerprint[:12]}) with Job {job_name}"
        await _publish(ctx, obj, checked,
                       [Verdict(type=datasets.VALIDATED, status=ConditionStatus.UNKNOWN,
                                reason=reasons.PROFILING, message=message),
                        *([] if status.validated_version else
                          [Verdict(type=READY, status=False, reason=reasons.PROFILING, message=message)])],
                       event=Event(type="Normal", reason=reasons.PROFILING, message=message)
                       if created else None)
        return
    outcome = job_outcome(job)
    if outcome.phase == "Failed":
        summary = termination_summary(await job_pods(ctx, job))
        detail = summary.get("message") or outcome.message
        message = f"profiling Job {job_name} failed ({outcome.reason}): {detail}"
        await _publish(ctx, obj, checked,
                       [Verdict(type=datasets.VALIDATED, status=False, reason=reasons.PROFILING_FAILED,
                                message=message),
                        Verdict(type=READY, status=False, reason=reasons.PROFILING_FAILED, message=message)],
                       event=Event(type="Warning", reason=reasons.PROFILING_FAILED, message=message))
        return
    if outcome.phase != "Succeeded":
        return
    try:
        # The artifact store is the operator's: read with its own credentials, whatever the source's.
        data = await asyncio.to_thread(storage.get_bytes, storage.join_uri(prefix, "result.json"))
        result = json.loads(data)
    except storage.StorageError as exc:
        message = f"cannot read the profile result: {exc}"
        await _publish(ctx, obj, checked,
                       [Verdict(type=READY, status=False, reason=reasons.RESULT_UNREADABLE, message=message)],
                       event=Event(type="Warning", reason=reasons.RESULT_UNREADABLE, message=message))
        return
    applied = datasets.apply_result(status, result, key=key, generation=meta.get("generation"), now=moment)
    await _publish(ctx, obj, applied.status, applied.verdicts)
    for event in applied.events:
        await ctx.events.record(obj, type_=event.type, reason=event.reason, message=event.message)


async def _publish(ctx: Context, obj: Obj, fields: dict[str, Any], verdicts: list[Verdict], *,
                   event: Event | None = None) -> None:
    """Every Dataset has a Ready condition from its first reconcile (Checking until known)."""
    decision = Decision(fields=fields, verdicts=verdicts, initial_ready=CHECKING)
    await publish(ctx, RES, obj, decision, event=event)


async def _source_credentials(ctx: Context, *, namespace: str,
                              source: DataSource) -> storage.Credentials | None:
    """The credentials the Dataset's owner granted for its source; None: the operator's own.

    The Secret is read on every check (by name; cheap next to the S3 calls it enables), so a
    rotated key is used at the next refresh; ``storage`` caches a bounded number of clients per
    key pair, so an unchanged Secret does not build a new client each time.
    """
    ref = source.credentials_secret_ref
    if ref is None:
        return None
    try:
        secret = await ctx.api.get(SECRETS, namespace, ref.name)
    except ApiError as exc:
        if exc.status != HTTPStatus.FORBIDDEN:
            raise
        raise credentials.forbidden(name=ref.name, namespace=namespace) from exc
    return credentials.from_secret(secret, name=ref.name)
