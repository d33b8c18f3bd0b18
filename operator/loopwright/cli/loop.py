"""One model's loop, picked out of the namespace's objects (pure: lists of objects in, a Loop out).

A model is the registry name shared by its TrainingPipeline (``spec.model.name``), its
ModelVersions (``spec.model``) and its Deployments (``spec.model``); the Dataset is what the
pipelines train on and the DriftPolicies are those watching the Deployments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopwright.api import names
from loopwright.cli.fmt import Obj, dig, name

Objects = Mapping[names.KindName, Sequence[Obj]]


@dataclass
class Loop:
    """Everything about one model in one namespace."""

    model: str
    namespace: str
    datasets: list[Obj] = field(default_factory=list)
    pipelines: list[Obj] = field(default_factory=list)
    versions: list[Obj] = field(default_factory=list)
    """Newest first."""
    deployments: list[Obj] = field(default_factory=list)
    policies: list[Obj] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.pipelines or self.versions or self.deployments)

    def objects(self) -> dict[str, list[Obj]]:
        """The objects by kind, as ``-o json|yaml`` prints them."""
        return {"datasets": self.datasets, "trainingPipelines": self.pipelines,
                "modelVersions": self.versions, "deployments": self.deployments,
                "driftPolicies": self.policies}

    def runs(self) -> dict[str, tuple[Obj, Mapping[str, Any]]]:
        """Every run in the pipelines' status by name, with its pipeline."""
        return {str(run.get("name")): (p, run) for p in self.pipelines
                for run in dig(p, "status", "runs") or () if run.get("name")}


def model_of(kind: names.KindName, obj: Obj) -> str | None:
    """The model an object belongs to (None for Datasets and DriftPolicies, which name none)."""
    if kind == names.TRAINING_PIPELINE:
        model = dig(obj, "spec", "model", "name")
    elif kind in (names.MODEL_VERSION, names.DEPLOYMENT):
        model = dig(obj, "spec", "model")
    else:
        return None
    return str(model) if model else None


def models(objects: Objects) -> list[str]:
    """Every model named in the namespace (for "no such model, these exist" messages)."""
    found = {model_of(kind, obj) for kind, items in objects.items() for obj in items}
    return sorted(m for m in found if m)


def select(model: str, objects: Objects, *, namespace: str) -> Loop:
    def of(kind: names.KindName) -> list[Obj]:
        return [o for o in objects.get(kind, ()) if model_of(kind, o) == model]

    pipelines = sorted(of(names.TRAINING_PIPELINE), key=name)
    dataset_names = {dig(p, "spec", "datasetRef", "name") for p in pipelines}
    versions = sorted(of(names.MODEL_VERSION), key=lambda o: -int(dig(o, "spec", "version") or 0))
    deployments = sorted(of(names.DEPLOYMENT), key=name)
    watched = {name(d) for d in deployments}
    return Loop(
        model=model, namespace=namespace,
        datasets=sorted((d for d in objects.get(names.DATASET, ()) if name(d) in dataset_names), key=name),
        pipelines=pipelines, versions=versions, deployments=deployments,
        policies=sorted((p for p in objects.get(names.DRIFT_POLICY, ())
                         if dig(p, "spec", "deploymentRef", "name") in watched), key=name),
    )


def production(loop: Loop) -> Obj | None:
    """The version carrying the ``production`` alias, if any."""
    return next((v for v in loop.versions if "production" in (dig(v, "status", "aliases") or ())), None)


def pipeline_of_version(loop: Loop, version: Obj) -> Obj | None:
    producer = dig(version, "spec", "lineage", "pipeline", "name")
    return next((p for p in loop.pipelines if name(p) == producer), None)
