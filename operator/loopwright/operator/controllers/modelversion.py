"""Handlers of ModelVersion objects (loopwright.dev/v1alpha1).

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

from loopwright.api.common import ConditionStatus
from loopwright.api.kinds import MODEL_VERSION as KIND
from loopwright.api.kinds import TRAINING_PIPELINE
from loopwright.api.modelversion import Check, ModelPhase, ModelVersionSpec, ModelVersionStatus
from loopwright.api.pipeline import PipelineValidation, RunPhase, TrainingPipelineSpec
from loopwright.core.conditions import READY, Verdict, merge
from loopwright.core.training import compiled, gates
from loopwright.core.training.runs import job_outcome, termination_summary
from loopwright.operator import kube, metrics
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import child_name, verification_job
from loopwright.operator.controllers import _runtime
from loopwright.operator.controllers._common import INVALID_SPEC, parse_spec
from loopwright.operator.kube import MANAGED_BY, child_labels

MODEL_VERSION_LABEL = f"{KIND.group}/{KIND.singular}"
ARTIFACT_VERIFIED = "ArtifactVerified"
VALIDATED = "Validated"
FINAL_PHASES = frozenset({ModelPhase.VALIDATED, ModelPhase.REJECTED})


@kopf.on.resume(group=KIND.group, version=KIND.version, plural=KIND.plural, id="modelversion.reconcile")
@kopf.on.create(group=KIND.group, version=KIND.version, plural=KIND.plural, id="modelversion.reconcile")
def reconcile(namespace: str | None, name: str, **_: Any) -> None:
    with metrics.reconcile(kind=KIND.kind, handler="reconcile"):
        sync(namespace=str(namespace), name=name)


@kopf.on.event(group="batch", version="v1", plural="jobs", id="modelversion.job-event",
               labels={**MANAGED_BY, MODEL_VERSION_LABEL: kopf.PRESENT})
def job_event(type: str, body: kopf.Body, namespace: str | None,
              labels: kopf.Labels, **_: Any) -> None:
    if type == "DELETED" or job_outcome(body).phase not in (RunPhase.SUCCEEDED, RunPhase.FAILED):
        return
    with metrics.reconcile(kind=KIND.kind, handler="job-event"):
        sync(namespace=str(namespace), name=labels[MODEL_VERSION_LABEL])


def sync(*, namespace: str, name: str) -> None:
    """Verify and validate one ModelVersion (idempotent; final verdicts are left alone)."""
    with _runtime.hold((KIND.plural, namespace, name)):
        _runtime.retry_on_conflict(lambda: _sync_once(namespace=namespace, name=name))


def _sync_once(*, namespace: str, name: str) -> None:
    obj = _runtime.get(KIND, namespace=namespace, name=name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return
    current = obj.get("status") or {}
    try:
        status = ModelVersionStatus.model_validate(current)
    except ValidationError:
        status = ModelVersionStatus()
    if status.phase in FINAL_PHASES:
        return
    parsed = parse_spec(KIND, obj.get("spec") or {})
    if not isinstance(parsed, ModelVersionSpec):
        _publish(obj, {"phase": ModelPhase.FAILED},
                 [Verdict(type=READY, status=False, reason=INVALID_SPEC, message=str(parsed))])
        return
    spec = parsed
    verified = _verify(obj, spec=spec, status=status)
    if verified is None:
        return
    artifact, compiled_check = verified
    validation, source = _validation(namespace=namespace, spec=spec)
    incumbent = _incumbent(namespace=namespace, name=name, model=spec.model,
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
                reason="Verified" if artifact.passed else "ArtifactRejected", message=artifact.message),
        Verdict(type=VALIDATED, status=validated, reason=verdict.reason, message=message),
        Verdict(type=READY, status=validated, reason=verdict.reason, message=message),
        *([compiled.verdict(compiled_check)] if compiled_check else []),
    ]
    _publish(obj, update, verdicts,
             event=("Normal" if validated else "Warning", "Validated" if validated else "Rejected", message))


def _verify(
    obj: Mapping[str, Any], *, spec: ModelVersionSpec, status: ModelVersionStatus
) -> tuple[Check, Check | None] | None:
    """The artifact check and the compiled check (None: nothing compiled) from the verification
    Job; None while it runs (the status says so)."""
    verified = status.condition(ARTIFACT_VERIFIED)
    if verified is not None and verified.status == "True":
        earlier = next((c for c in status.checks if c.name == compiled.CHECK), None)
        return Check(name="artifact", passed=True, message=verified.message), earlier
    meta = obj["metadata"]
    job_name = child_name(meta["name"], "verify")
    job = _runtime.read_job(namespace=meta["namespace"], name=job_name)
    if job is None:
        manifest = verification_job(
            namespace=meta["namespace"], name=job_name,
            owner=Owner(kind=KIND.kind, name=meta["name"], uid=meta["uid"], namespace=meta["namespace"]),
            uri=spec.artifact.uri, sha256=spec.artifact.sha256, compiled=spec.compiled,
            trusted_types=spec.artifact.trusted_types or (), image=spec.image,
            labels={**child_labels(KIND, meta["name"]), "loopwright.dev/model": spec.model},
            settings=_runtime.job_settings())
        job, _ = _runtime.create_job(manifest)
    outcome = job_outcome(job)
    if outcome.phase == RunPhase.SUCCEEDED:
        summary = termination_summary(_runtime.job_pods(job))
        artifact = Check(name="artifact", passed=True,
                         message=str(summary.get("message") or f"{spec.artifact.uri}: verified"))
        return artifact, compiled.check(summary)
    if outcome.phase == RunPhase.FAILED:
        summary = termination_summary(_runtime.job_pods(job))
        if outcome.reason == "BadData":  # exit 3: the verifier refused the artifact
            return Check(name="artifact", passed=False,
                         message=f"{summary.get('error', 'Rejected')}: "
                                 f"{summary.get('message', outcome.message)}"), None
        message = f"verification Job {job_name} failed ({outcome.reason}): {outcome.message}"
        _publish(obj, {"phase": ModelPhase.FAILED},
                 [Verdict(type=ARTIFACT_VERIFIED, status=ConditionStatus.UNKNOWN, reason="VerificationFailed",
                          message=message),
                  Verdict(type=READY, status=False, reason="VerificationFailed", message=message)],
                 event=("Warning", "VerificationFailed", message))
        return None
    message = f"verifying {spec.artifact.uri} with Job {job_name}"
    _publish(obj, {"phase": ModelPhase.PENDING},
             [Verdict(type=ARTIFACT_VERIFIED, status=ConditionStatus.UNKNOWN, reason="Verifying",
                      message=message),
              Verdict(type=VALIDATED, status=ConditionStatus.UNKNOWN, reason="Verifying",
                      message="waiting for the artifact"),
              Verdict(type=READY, status=False, reason="Verifying", message=message)])
    return None


def _validation(*, namespace: str, spec: ModelVersionSpec) -> tuple[PipelineValidation | None, str]:
    """The producing pipeline's gates, or None (with why) when there is no pipeline to ask."""
    lineage = spec.lineage.pipeline if spec.lineage else None
    if lineage is None:
        return None, "no producing TrainingPipeline in spec.lineage"
    pipeline = _runtime.get(TRAINING_PIPELINE, namespace=namespace, name=lineage.name)
    if pipeline is None:
        return None, f"TrainingPipeline {lineage.name} no longer exists"
    parsed = parse_spec(TRAINING_PIPELINE, pipeline.get("spec") or {})
    if not isinstance(parsed, TrainingPipelineSpec):
        return None, f"TrainingPipeline {lineage.name} has an invalid spec: {parsed}"
    return parsed.validation, f"gates of TrainingPipeline {lineage.name}"


def _incumbent(*, namespace: str, name: str, model: str, alias: str) -> gates.Incumbent | None:
    """The other version of ``model`` carrying ``alias`` (hand-made ones included, hence no label)."""
    for mv in kube.list_objects(KIND, namespace=namespace):
        mv_spec = mv.get("spec") or {}
        if mv["metadata"]["name"] == name or mv_spec.get("model") != model:
            continue
        if alias in ((mv.get("status") or {}).get("aliases") or ()):
            return gates.Incumbent(name=mv["metadata"]["name"], version=int(mv_spec.get("version", 0)),
                                   metrics={k: float(v) for k, v in (mv_spec.get("metrics") or {}).items()})
    return None


def _publish(
    obj: Mapping[str, Any],
    update: Mapping[str, Any],
    verdicts: list[Verdict],
    *,
    event: tuple[str, str, str] | None = None,
) -> None:
    current = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    conditions = merge(current.get("conditions"), verdicts, generation=generation)
    patch = {**update, "observedGeneration": generation, "conditions": conditions}
    if any(current.get(k) != v for k, v in patch.items()):
        _runtime.patch_status(KIND, obj, patch)
    if event is not None and any(_runtime.condition_changed(current.get("conditions"), v) for v in verdicts):
        type_, reason, message = event
        _runtime.post_event(obj, type_=type_, reason=reason, message=message)
