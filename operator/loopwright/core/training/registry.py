"""The model registry: version numbers, restart-safe registration, the ModelVersion of a run.

Version allocation (see CONTRACTS): version = 1 + the highest of the model's versions among the
ModelVersions labelled ``loopwright.dev/model=<model>`` and of the pipeline's ``status.lastVersion``
(so a number is never reused, even after the newest version was deleted); the name
``<model>-v<version>`` makes a concurrent allocation of the same number fail with 409, after which
the caller lists again.
Before allocating, the caller looks for a ModelVersion already labelled with the run
(``loopwright.dev/run``) and adopts it, so a restart between "created" and "recorded in the
pipeline's status" never registers the same run twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from loopwright.api.common import API_VERSION
from loopwright.api.labels import MANAGED_BY, MODEL_LABEL, PIPELINE_LABEL, RUN_LABEL
from loopwright.api.modelversion import (
    Artifact,
    CompiledArtifact,
    DatasetLineage,
    Framework,
    Lineage,
    ModelVersionSpec,
    PipelineLineage,
    PrimaryMetric,
    encode_params,
    model_version_name,
)


def next_version(existing: Iterable[Mapping[str, Any]], *, last: int = 0) -> int:
    """1 + the highest ``spec.version`` among ``existing`` and ``last`` (the highest ever registered)."""
    return 1 + max([last, *(int((mv.get("spec") or {}).get("version") or 0) for mv in existing)])


def find_by_run(existing: Iterable[Mapping[str, Any]], run: str) -> Mapping[str, Any] | None:
    """The ModelVersion a run already registered, if any."""
    return next((mv for mv in existing if ((mv.get("metadata") or {}).get("labels") or {}).get(RUN_LABEL)
                 == run), None)


def labels(*, model: str, run: str, pipeline: str) -> dict[str, str]:
    return {**MANAGED_BY, MODEL_LABEL: model, RUN_LABEL: run, PIPELINE_LABEL: pipeline}


def spec_from_result(
    *,
    model: str,
    version: int,
    result: Mapping[str, Any],
    dataset: str,
    pipeline: str,
    run: str,
    image: str,
    inputs_digest: str | None = None,
) -> ModelVersionSpec:
    """The registry entry of a successful run, from the trainer's ``result.json``.

    ``image`` is the image the run's Job ran. A factory's model (``factory`` in the result) keeps
    it as ``spec.image``, with the types it declared as ``spec.artifact.trustedTypes``: its
    verification Job and its predictors run that image and trust those types, nothing more.
    Raises ``KeyError``/``ValueError`` when the result lacks what a ModelVersion needs.
    """
    factory = result.get("factory")
    outputs = result["artifacts"]
    metrics = {str(k): float(v) for k, v in (result.get("metrics") or {}).items()}
    primary = result.get("primaryMetric")
    versions = {str(k): str(v) for k, v in (result.get("versions") or {}).items()}
    profile = outputs.get("profile") or {}
    compiled, holdout = outputs.get("compiled"), outputs.get("holdout")
    return ModelVersionSpec(
        model=model,
        version=version,
        artifact=Artifact(uri=outputs["model"]["uri"], sha256=outputs["model"]["sha256"],
                          trusted_types=list(result.get("trustedTypes") or []) or None if factory else None),
        image=image if factory else None,
        compiled=CompiledArtifact(uri=compiled["uri"], sha256=compiled["sha256"], holdout_uri=holdout["uri"],
                                  holdout_sha256=holdout["sha256"]) if compiled and holdout else None,
        framework=Framework(version=versions["sklearn"]) if "sklearn" in versions else None,
        libraries=versions,
        metrics=metrics,
        primary_metric=PrimaryMetric(name=primary, value=metrics[primary]) if primary in metrics else None,
        lineage=Lineage(
            dataset=DatasetLineage(name=dataset, version=str(result["dataset"]["digest"])),
            pipeline=PipelineLineage(name=pipeline, run=run),
            image=image,
            estimator=result.get("estimator"),
            factory=factory,
            params=encode_params(result.get("params") or {}),
            seed=result.get("seed"),
            inputs_digest=inputs_digest,
        ),
        profile_uri=profile.get("uri"),
        profile_sha256=profile.get("sha256"),
        report_uri=(outputs.get("report") or {}).get("uri"),
    )


def manifest(*, namespace: str, spec: ModelVersionSpec, labels: Mapping[str, str]) -> dict[str, Any]:
    """The ModelVersion object; deliberately without an ownerReference (the registry outlives runs)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {"name": model_version_name(model=spec.model, version=spec.version),
                     "namespace": namespace, "labels": dict(labels)},
        "spec": spec.to_wire(),
    }
