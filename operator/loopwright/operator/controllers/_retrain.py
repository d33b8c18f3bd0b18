"""The DriftPolicy's reads and writes about its retrain (blocking calls; the check moves them off the loop).

The decisions are :mod:`loopwright.core.drift.retrain`'s; this module only gathers what they need
from the TrainingPipeline, the ModelVersion it registered, the Deployment and the Dataset, and
writes the request annotation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from loopwright.api.deployment import LATEST
from loopwright.api.driftpolicy import RetrainStatus
from loopwright.api.kinds import DATASET, MODEL_VERSION, TRAINING_PIPELINE
from loopwright.api.modelversion import ModelPhase
from loopwright.api.pipeline import TRAIN_REQUEST_ANNOTATION, RunPhase, RunTrigger, TrainingPipelineStatus
from loopwright.core.drift.retrain import Progress, Rollout, answering_run
from loopwright.core.training.triggers import TRAIN_TRIGGER_ANNOTATION
from loopwright.operator import kube
from loopwright.operator.controllers import _runtime


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


def observe(
    *, namespace: str, retrain: RetrainStatus, rollout: Rollout
) -> tuple[Progress, dict[str, Any] | None]:
    """The progress of a retrain in flight, and the pipeline as read (None: not found)."""
    pipeline = _runtime.get(TRAINING_PIPELINE, namespace=namespace, name=retrain.pipeline)
    if pipeline is None:
        return Progress(pipeline_found=False), None
    try:
        runs = TrainingPipelineStatus.model_validate(pipeline.get("status") or {}).runs
    except ValidationError:
        runs = []
    run = answering_run(retrain, runs)
    phase = None
    if run is not None and run.phase == RunPhase.SUCCEEDED and run.model_version:
        mv = _runtime.get(MODEL_VERSION, namespace=namespace, name=run.model_version)
        raw = str(((mv or {}).get("status") or {}).get("phase") or "")
        phase = ModelPhase(raw) if raw in ModelPhase.__members__.values() else None
    return Progress(pipeline_found=True, runs=runs, version_phase=phase, rollout=rollout), pipeline


def dataset_version(*, namespace: str, pipeline: str) -> str | None:
    """The validated version of the pipeline's Dataset now (None: no pipeline, Dataset or version)."""
    obj = _runtime.get(TRAINING_PIPELINE, namespace=namespace, name=pipeline)
    dataset = ((obj or {}).get("spec") or {}).get("datasetRef", {}).get("name")
    found = _runtime.get(DATASET, namespace=namespace, name=dataset) if dataset else None
    version = ((found or {}).get("status") or {}).get("validatedVersion")
    return str(version) if version else None


def ensure_requested(*, namespace: str, pipeline: str, policy: str, token: str, trigger: RunTrigger,
                     obj: Mapping[str, Any] | None = None) -> None:
    """Make the pipeline carry this request (CONTRACTS: a new token is one run); idempotent.

    Nothing is written when the pipeline already has the token (set or handled), or carries
    a request this policy did not make or made later: that request is as good as ours (the
    run answering it answers ours too), and overwriting it would cancel someone else's run.
    """
    obj = obj if obj is not None else kube.get_object(TRAINING_PIPELINE, namespace=namespace, name=pipeline)
    current = (obj["metadata"].get("annotations") or {}).get(TRAIN_REQUEST_ANNOTATION)
    handled = (obj.get("status") or {}).get("handledTrainRequest")
    if token in (current, handled) or (current and not older_request(current, policy=policy, than=token)):
        return
    kube.custom_objects().patch_namespaced_custom_object(
        TRAINING_PIPELINE.group, TRAINING_PIPELINE.version, namespace, TRAINING_PIPELINE.plural, pipeline,
        {"metadata": {"annotations": {TRAIN_REQUEST_ANNOTATION: token,
                                      TRAIN_TRIGGER_ANNOTATION: RunTrigger(trigger).value}}})


def older_request(current: str, *, policy: str, than: str) -> bool:
    """Whether ``current`` is an earlier token of this policy (``<policy>-<unix seconds>``)."""
    prefix = f"{policy}-"
    stamp, ours = current.removeprefix(prefix), than.removeprefix(prefix)
    return current.startswith(prefix) and stamp.isdigit() and ours.isdigit() and int(stamp) < int(ours)
