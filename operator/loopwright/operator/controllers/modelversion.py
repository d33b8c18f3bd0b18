"""The ModelVersion controller (loopwright.dev/v1alpha1).

A new version is Pending until a verification Job (``loopwright-verifier``, owned by
the ModelVersion) proves the artifact exists, matches its sha256 and loads with the trusted
types only. The load happens in a pod, not in the operator: the operator does not ship
scikit-learn, and a large model must not inflate the operator's memory.

Then the gates of the producing pipeline (``spec.lineage.pipeline``) apply: thresholds and the
comparison with the champion, the version of the same model carrying the pipeline's champion
alias (``production`` by default). A ModelVersion without a pipeline (made by hand, or whose
pipeline was deleted) is validated on the artifact checks alone, and its Validated condition
says so. The verdict is final: the spec is immutable, so it is never recomputed, and the
``aliases`` and ``deployments`` fields (owned by the Deployment controller) are never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from loopwright.api import reasons
from loopwright.api.common import ConditionStatus
from loopwright.api.kinds import MODEL_VERSION as KIND
from loopwright.api.kinds import TRAINING_PIPELINE
from loopwright.api.labels import MANAGED_BY, MODEL_LABEL, MODEL_VERSION_LABEL, child_labels
from loopwright.api.modelversion import Check, ModelPhase, ModelVersionSpec, ModelVersionStatus
from loopwright.api.names import child_name
from loopwright.api.pipeline import PipelineValidation, RunPhase, TrainingPipelineSpec
from loopwright.core.conditions import READY, Event, Verdict
from loopwright.core.training import compiled, gates
from loopwright.core.training.runs import job_outcome, termination_summary
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import JobSettings, verification_job
from loopwright.operator.controllers._common import job_pods, parse_spec, publish
from loopwright.operator.runtime.client import JOBS, Obj, resource
from loopwright.operator.runtime.controller import MANAGER, Context, Key
from loopwright.operator.runtime.queue import Result
from loopwright.operator.runtime.status import Decision

RES = resource(KIND)
PIPELINES = resource(TRAINING_PIPELINE)
ARTIFACT_VERIFIED = "ArtifactVerified"
VALIDATED = "Validated"
FINAL_PHASES = frozenset({ModelPhase.VALIDATED, ModelPhase.REJECTED})


class ModelVersions:
    kind = KIND.kind
    workers = 4

    async def reconcile(self, ctx: Context, key: Key) -> Result:
        """Verify and validate one ModelVersion (idempotent; final verdicts are left alone)."""
        obj = await ctx.api.get(RES, *key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return Result()
        try:
            status = ModelVersionStatus.model_validate(obj.get("status") or {})
        except ValidationError:
            status = ModelVersionStatus()
        if status.phase in FINAL_PHASES:
            return Result()
        parsed = parse_spec(KIND, obj.get("spec") or {})
        if not isinstance(parsed, ModelVersionSpec):
            await _publish(ctx, obj, {"phase": ModelPhase.FAILED},
                           [Verdict(type=READY, status=False, reason=reasons.INVALID_SPEC,
                                    message=str(parsed))])
            return Result()
        verified = await _verify(ctx, obj, spec=parsed, status=status)
        if verified is not None:
            await _validate(ctx, obj, spec=parsed, verified=verified)
        return Result()


MANAGER.register(ModelVersions())
watch = kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural,
                      id="modelversion.watch")(MANAGER.watcher(KIND.kind))


@kopf.on.event(group="batch", version="v1", plural="jobs", id="modelversion.job-event",
               labels={**MANAGED_BY, MODEL_VERSION_LABEL: kopf.PRESENT})
async def job_event(type: str, body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    if type != "DELETED" and job_outcome(body).phase in (RunPhase.SUCCEEDED, RunPhase.FAILED):
        MANAGER.enqueue(KIND.kind, (namespace, labels[MODEL_VERSION_LABEL]))


async def _validate(ctx: Context, obj: Obj, *, spec: ModelVersionSpec,
                    verified: tuple[Check, Check | None]) -> None:
    """The gates of the producing pipeline, judged on the verified artifact."""
    meta = obj["metadata"]
    artifact, compiled_check = verified
    validation, source = await _validation(ctx, namespace=meta["namespace"], spec=spec)
    incumbent = await _incumbent(ctx, namespace=meta["namespace"], name=meta["name"], model=spec.model,
                                 alias=validation.champion.alias if validation else "production")
    verdict = gates.evaluate(model=spec.model, metrics=spec.metrics,
                             primary_metric=spec.primary_metric.name if spec.primary_metric else None,
                             artifact=artifact, validation=validation, incumbent=incumbent)
    message = f"{verdict.message} ({source})" if validation is None else verdict.message
    validated = verdict.phase == ModelPhase.VALIDATED
    update = {
        "phase": verdict.phase,
        "checks": [c.to_wire() for c in (*verdict.checks, *([compiled_check] if compiled_check else []))],
        "champion": verdict.champion.to_wire() if verdict.champion else None,
    }
    verdicts = [
        Verdict(type=ARTIFACT_VERIFIED, status=artifact.passed,
                reason=reasons.VERIFIED if artifact.passed else reasons.ARTIFACT_REJECTED,
                message=artifact.message),
        Verdict(type=VALIDATED, status=validated, reason=verdict.reason, message=message),
        Verdict(type=READY, status=validated, reason=verdict.reason, message=message),
        *([compiled.verdict(compiled_check)] if compiled_check else []),
    ]
    await _publish(ctx, obj, update, verdicts, event=Event(
        type="Normal" if validated else "Warning",
        reason=reasons.VALIDATED if validated else reasons.REJECTED, message=message))


async def _verify(
    ctx: Context, obj: Obj, *, spec: ModelVersionSpec, status: ModelVersionStatus
) -> tuple[Check, Check | None] | None:
    """The artifact check and the compiled check (None: nothing compiled) from the verification
    Job; None while it runs (the status says so)."""
    verified = status.condition(ARTIFACT_VERIFIED)
    if verified is not None and verified.status == "True":
        earlier = next((c for c in status.checks if c.name == compiled.CHECK), None)
        return Check(name="artifact", passed=True, message=verified.message), earlier
    meta = obj["metadata"]
    job_name = child_name(meta["name"], "verify")
    job = await ctx.api.get(JOBS, meta["namespace"], job_name)
    if job is None:
        manifest = verification_job(
            namespace=meta["namespace"], name=job_name,
            owner=Owner(kind=KIND.kind, name=meta["name"], uid=meta["uid"], namespace=meta["namespace"]),
            uri=spec.artifact.uri, sha256=spec.artifact.sha256, compiled=spec.compiled,
            trusted_types=spec.artifact.trusted_types or (), image=spec.image,
            labels={**child_labels(KIND, meta["name"]), MODEL_LABEL: spec.model},
            settings=JobSettings.of(ctx.config))
        job, _ = await ctx.api.create_or_adopt(JOBS, manifest)
    outcome = job_outcome(job)
    if outcome.phase == RunPhase.SUCCEEDED:
        summary = termination_summary(await job_pods(ctx, job))
        artifact = Check(name="artifact", passed=True,
                         message=str(summary.get("message") or f"{spec.artifact.uri}: verified"))
        return artifact, compiled.check(summary)
    if outcome.phase == RunPhase.FAILED:
        summary = termination_summary(await job_pods(ctx, job))
        if outcome.reason == "BadData":  # exit 3: the verifier refused the artifact
            return Check(name="artifact", passed=False,
                         message=f"{summary.get('error', 'Rejected')}: "
                                 f"{summary.get('message', outcome.message)}"), None
        message = f"verification Job {job_name} failed ({outcome.reason}): {outcome.message}"
        failed = reasons.VERIFICATION_FAILED
        await _publish(ctx, obj, {"phase": ModelPhase.FAILED},
                       [Verdict(type=ARTIFACT_VERIFIED, status=ConditionStatus.UNKNOWN, reason=failed,
                                message=message),
                        Verdict(type=READY, status=False, reason=failed, message=message)],
                       event=Event(type="Warning", reason=failed, message=message))
        return None
    message = f"verifying {spec.artifact.uri} with Job {job_name}"
    await _publish(ctx, obj, {"phase": ModelPhase.PENDING},
                   [Verdict(type=ARTIFACT_VERIFIED, status=ConditionStatus.UNKNOWN, reason=reasons.VERIFYING,
                            message=message),
                    Verdict(type=VALIDATED, status=ConditionStatus.UNKNOWN, reason=reasons.VERIFYING,
                            message="waiting for the artifact"),
                    Verdict(type=READY, status=False, reason=reasons.VERIFYING, message=message)])
    return None


async def _validation(ctx: Context, *, namespace: str,
                      spec: ModelVersionSpec) -> tuple[PipelineValidation | None, str]:
    """The producing pipeline's gates, or None (with why) when there is no pipeline to ask."""
    lineage = spec.lineage.pipeline if spec.lineage else None
    if lineage is None:
        return None, "no producing TrainingPipeline in spec.lineage"
    pipeline = await ctx.api.get(PIPELINES, namespace, lineage.name)
    if pipeline is None:
        return None, f"TrainingPipeline {lineage.name} no longer exists"
    parsed = parse_spec(TRAINING_PIPELINE, pipeline.get("spec") or {})
    if not isinstance(parsed, TrainingPipelineSpec):
        return None, f"TrainingPipeline {lineage.name} has an invalid spec: {parsed}"
    return parsed.validation, f"gates of TrainingPipeline {lineage.name}"


async def _incumbent(ctx: Context, *, namespace: str, name: str, model: str,
                     alias: str) -> gates.Incumbent | None:
    """The other version of ``model`` carrying ``alias`` (hand-made ones included, hence no label)."""
    for mv in await ctx.api.list(RES, namespace):
        mv_spec = mv.get("spec") or {}
        if mv["metadata"]["name"] == name or mv_spec.get("model") != model:
            continue
        if alias in ((mv.get("status") or {}).get("aliases") or ()):
            return gates.Incumbent(name=mv["metadata"]["name"], version=int(mv_spec.get("version", 0)),
                                   metrics={k: float(v) for k, v in (mv_spec.get("metrics") or {}).items()})
    return None


async def _publish(ctx: Context, obj: Obj, update: Mapping[str, Any], verdicts: list[Verdict], *,
                   event: Event | None = None) -> None:
    await publish(ctx, RES, obj, Decision(fields=update, verdicts=verdicts), event=event)
