"""The five kinds of loopwright.dev/v1alpha1: names, and the models of their spec and status.

Controllers, crdgen and the tests all look kinds up here, so a plural or a short
name is spelled once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopwright.api import names
from loopwright.api._base import ApiModel
from loopwright.api.analysistemplate import AnalysisTemplateSpec, AnalysisTemplateStatus
from loopwright.api.common import API_VERSION, GROUP, VERSION, ResourceStatus
from loopwright.api.dataset import DatasetSpec, DatasetStatus
from loopwright.api.deployment import DeploymentSpec, DeploymentStatus
from loopwright.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from loopwright.api.modelversion import ModelVersionSpec, ModelVersionStatus
from loopwright.api.pipeline import TrainingPipelineSpec, TrainingPipelineStatus


@dataclass(frozen=True, kw_only=True)
class Kind:
    """One custom resource kind and the models of its spec and status."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[ApiModel]
    status: type[ResourceStatus]
    description: str
    printer_columns: tuple[Mapping[str, Any], ...] = field(compare=False)
    """What ``kubectl get`` shows (additionalPrinterColumns)."""
    scale: Mapping[str, str] | None = field(default=None, compare=False)
    """The scale subresource's paths (``kubectl scale``), for kinds that have one."""

    group: str = GROUP
    version: str = VERSION

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


def _ready(*, priority: int = 1) -> list[dict[str, Any]]:
    return [
        {"name": "Ready", "type": "string", "priority": priority,
         "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Reason", "type": "string", "priority": 1,
         "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
    ]


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def _kind(name: names.KindName, *, spec: type[ApiModel], status: type[ResourceStatus],
          description: str, columns: list[dict[str, Any]], scale: Mapping[str, str] | None = None) -> Kind:
    return Kind(kind=name.kind, plural=name.plural, short_names=name.short_names, spec=spec, status=status,
                description=description, printer_columns=(*columns, *_ready(), _AGE), scale=scale)


DATASET = _kind(
    names.DATASET,
    spec=DatasetSpec, status=DatasetStatus,
    description="A versioned, validated table in S3 (CSV or Parquet). A profiling Job computes its digest, "
                "statistics and reference bins; invalid data never trains.",
    columns=[
        {"name": "Version", "type": "string", "jsonPath": ".status.shortVersion",
         "description": "First 12 hex digits of the latest version's digest."},
        {"name": "Rows", "type": "integer", "jsonPath": ".status.rows"},
        {"name": "Validated", "type": "string",
         "jsonPath": '.status.conditions[?(@.type=="Validated")].status'},
    ])
TRAINING_PIPELINE = _kind(
    names.TRAINING_PIPELINE,
    spec=TrainingPipelineSpec, status=TrainingPipelineStatus,
    description="How to turn a Dataset into a model, and when: one training Job per run, gated by "
                "thresholds and a comparison with the production model.",
    columns=[
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
        {"name": "Estimator", "type": "string", "jsonPath": ".spec.model.estimator"},
        {"name": "Last Run", "type": "string", "jsonPath": ".status.lastRun"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    ])
MODEL_VERSION = _kind(
    names.MODEL_VERSION,
    spec=ModelVersionSpec, status=ModelVersionStatus,
    description="A registered model: its skops artifact with sha256, metrics and lineage. The spec is "
                "immutable.",
    columns=[
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Version", "type": "integer", "jsonPath": ".spec.version"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Metric", "type": "string", "jsonPath": ".spec.primaryMetric.name"},
        {"name": "Score", "type": "number", "jsonPath": ".spec.primaryMetric.value"},
        {"name": "Aliases", "type": "string", "jsonPath": ".status.aliases"},
    ])
DEPLOYMENT = _kind(
    names.DEPLOYMENT,
    spec=DeploymentSpec, status=DeploymentStatus,
    description="A prediction service for one registered model, rolled out by canary with automatic "
                "analysis and rollback. Not apps/v1 Deployment: use the short names mldeploy / mld.",
    columns=[
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Stable", "type": "integer", "jsonPath": ".status.stable.version"},
        {"name": "Canary", "type": "integer", "jsonPath": ".status.canary.version"},
        {"name": "Queued", "type": "integer", "jsonPath": ".status.queued.version", "priority": 1},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.canary.weight",
         "description": "Traffic percentage on the canary."},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas", "priority": 1},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
    ],
    # `kubectl scale mld/x --replicas=3` sets spec.replicas (which spec.autoscaling overrides).
    scale={"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
           "labelSelectorPath": ".status.selector"})
DRIFT_POLICY = _kind(
    names.DRIFT_POLICY,
    spec=DriftPolicySpec, status=DriftPolicyStatus,
    description="Watches a Deployment's live traffic for data drift, prediction drift and loss of "
                "quality, and retrains when they persist.",
    columns=[
        {"name": "Deployment", "type": "string", "jsonPath": ".spec.deploymentRef.name"},
        {"name": "Drift Share", "type": "number", "jsonPath": ".status.driftShare"},
        {"name": "Drifted", "type": "boolean", "jsonPath": ".status.drifted"},
        {"name": "Consecutive", "type": "integer", "jsonPath": ".status.consecutive", "priority": 1},
        {"name": "Retrain", "type": "string",
         "jsonPath": '.status.conditions[?(@.type=="Retraining")].reason'},
        {"name": "Last Check", "type": "date", "jsonPath": ".status.lastCheckTime"},
    ])

ANALYSIS_TEMPLATE = _kind(
    names.ANALYSIS_TEMPLATE,
    spec=AnalysisTemplateSpec, status=AnalysisTemplateStatus,
    description="Prometheus checks shared by Deployments: each names templates in "
                "spec.rollout.analysis.templates, and its canary is also judged by their checks.",
    columns=[
        {"name": "Checks", "type": "string", "jsonPath": ".spec.prometheus[*].name"},
    ])

ALL_KINDS: tuple[Kind, ...] = (DATASET, TRAINING_PIPELINE, MODEL_VERSION, DEPLOYMENT, DRIFT_POLICY,
                               ANALYSIS_TEMPLATE)


def kind_of(obj: Mapping[str, Any]) -> Kind:
    """The Kind of a loopwright manifest; raises ValueError for anything else."""
    for kind in ALL_KINDS:
        if obj.get("apiVersion") == API_VERSION and obj.get("kind") == kind.kind:
            return kind
    raise ValueError(
        f"not a {API_VERSION} object: apiVersion={obj.get('apiVersion')!r} kind={obj.get('kind')!r}")
