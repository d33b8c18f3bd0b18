"""Nothing to learn, nothing to register: the inputs digest of a run, and the run that ends without a Job.

A model is decided by its data and how it is fitted: the Dataset version (a content digest), the
estimator (or a factory in its image) and its parameters, any search over them, the split and its
seed, and the schema the preprocessing is derived from. Their digest is recorded on every run and on
the ModelVersion it registers. A run started by drift or by a drop in performance whose digest
equals an existing version's would train that same model again: it ends at once, phase Skipped,
reason NoNewData, and registers nothing. What is missing then is new labelled data (captured traffic
with feedback labels, or a new Dataset version), and the run's message says so. Runs asked for by a
person or a schedule still train: they are asked for explicitly. """

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from loopwright.api.pipeline import Run, RunPhase, RunTrigger, TrainingPipelineSpec

NO_NEW_DATA = "NoNewData"
LEARNING_TRIGGERS = frozenset({RunTrigger.DRIFT, RunTrigger.PERFORMANCE})
"""Triggers that retrain because the world changed: they need new data to learn anything."""
NEEDS_DATA = ("retraining needs new labelled data: captured requests with feedback labels, or a new "
              "Dataset version")


def digest(*, dataset_version: str, spec: TrainingPipelineSpec, schema: Mapping[str, Any] | None) -> str:
    """``sha256:<hex>`` over the canonical JSON of everything that decides the trained model."""
    payload = {
        "dataset": dataset_version,
        "estimator": spec.model.estimator,
        "params": spec.model.params,
        "split": spec.split.to_wire(),
        "schema": schema or {},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def twin(existing: Iterable[Mapping[str, Any]], inputs_digest: str) -> Mapping[str, Any] | None:
    """The earliest ModelVersion trained on exactly these inputs, if one exists."""
    same = [mv for mv in existing
            if ((mv.get("spec") or {}).get("lineage") or {}).get("inputsDigest") == inputs_digest]
    return min(same, key=lambda mv: int((mv.get("spec") or {}).get("version") or 0), default=None)


def needs_learning(trigger: RunTrigger) -> bool:
    """Whether a run of this trigger is skipped when an identical version exists."""
    return trigger in LEARNING_TRIGGERS


def skipped(run: Run, *, same_as: Mapping[str, Any], now: datetime) -> Run:
    """The run, ended without a Job because ``same_as`` was trained on the same inputs."""
    spec = same_as.get("spec") or {}
    name = (same_as.get("metadata") or {}).get("name") or ""
    message = (f"no new data since version {spec.get('version')} ({name} was trained on the same dataset "
               f"version, estimator, parameters and seed): nothing registered; {NEEDS_DATA}")
    return run.model_copy(update={"phase": RunPhase.SKIPPED, "reason": NO_NEW_DATA, "message": message,
                                  "completion_time": now})
