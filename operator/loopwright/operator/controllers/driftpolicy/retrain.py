"""The DriftPolicy's reads about its retrain in flight.

The decisions are :mod:`loopwright.core.drift.retrain`'s; this module only gathers what they need
from the TrainingPipeline, the ModelVersion it registered, the Deployment and the Dataset.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from loopwright.api.driftpolicy import RetrainStatus
from loopwright.api.kinds import DATASET
from loopwright.api.modelversion import ModelPhase
from loopwright.api.pipeline import RunPhase, TrainingPipelineStatus
from loopwright.core.drift.retrain import Progress, Rollout, answering_run
from loopwright.operator.controllers.driftpolicy.reads import MODEL_VERSIONS, PIPELINES
from loopwright.operator.runtime.client import resource
from loopwright.operator.runtime.controller import Context

DATASETS = resource(DATASET)


async def observe(ctx: Context, *, namespace: str, retrain: RetrainStatus,
                  rollout: Rollout) -> tuple[Progress, dict[str, Any] | None]:
    """The progress of a retrain in flight, and the pipeline as read (None: not found)."""
    pipeline = await ctx.api.get(PIPELINES, namespace, retrain.pipeline)
    if pipeline is None:
        return Progress(pipeline_found=False), None
    try:
        runs = TrainingPipelineStatus.model_validate(pipeline.get("status") or {}).runs
    except ValidationError:
        runs = []
    run = answering_run(retrain, runs)
    phase = None
    if run is not None and run.phase == RunPhase.SUCCEEDED and run.model_version:
        mv = await ctx.api.get(MODEL_VERSIONS, namespace, run.model_version)
        raw = str(((mv or {}).get("status") or {}).get("phase") or "")
        phase = ModelPhase(raw) if raw in ModelPhase.__members__.values() else None
    return Progress(pipeline_found=True, runs=runs, version_phase=phase, rollout=rollout), pipeline


async def dataset_version(ctx: Context, *, namespace: str, pipeline: str) -> str | None:
    """The validated version of the pipeline's Dataset now (None: no pipeline, Dataset or version)."""
    obj = await ctx.api.get(PIPELINES, namespace, pipeline)
    dataset = ((obj or {}).get("spec") or {}).get("datasetRef", {}).get("name")
    found = await ctx.api.get(DATASETS, namespace, dataset) if dataset else None
    version = ((found or {}).get("status") or {}).get("validatedVersion")
    return str(version) if version else None
