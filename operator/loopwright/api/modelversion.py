"""ModelVersion: the registry entry of one trained model; its spec never changes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from loopwright.api._base import ApiModel
from loopwright.api.common import (
    LABEL_NAME_PATTERN,
    LIST_SET,
    SHA256_PATTERN,
    ResourceStatus,
    rules,
)

TYPE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
"""A dotted type name, e.g. ``mypkg.features.RatioFeatures``."""
TypeName = Annotated[str, Field(max_length=256, pattern=TYPE_NAME_PATTERN)]
IMAGE_PATTERN = r"^[a-z0-9]([a-z0-9._/:@-]*[a-zA-Z0-9])?$"
"""A container image reference (registry/path:tag or @digest)."""
ARTIFACT_URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|/.+)$"


def encode_params(params: Mapping[str, object]) -> dict[str, str]:
    """Estimator parameters in the form of ``spec.lineage.params`` (JSON text per value)."""
    return {name: json.dumps(value, sort_keys=True) for name, value in params.items()}


def model_version_name(*, model: str, version: int) -> str:
    """The deterministic object name of a model's version: ``<model>-v<version>``."""
    return f"{model}-v{version}"


class ArtifactFormat(StrEnum):
    SKOPS = "skops"


class Artifact(ApiModel):
    """The serialised model."""

    uri: str = Field(max_length=1024, pattern=ARTIFACT_URI_PATTERN,
                     description="s3://bucket/key of the model file (or an absolute local path in tests).")
    sha256: str = Field(max_length=64, pattern=SHA256_PATTERN,
                        description="Hex sha256 of the file; checked before every load.")
    format: ArtifactFormat = Field(default=ArtifactFormat.SKOPS,
                                   description="Serialisation format. Only skops: pickle is never loaded.")
    trusted_types: list[TypeName] | None = Field(
        default=None, max_length=32,
        description="Types the artifact may load beyond Loopwright's built-in list (a factory's own, "
                    "declared by the pipeline's model.trustedTypes); the verification Job refuses a file "
                    "asking for any other.",
        json_schema_extra=LIST_SET)


class CompiledFormat(StrEnum):
    LOOPWRIGHT_COMPILED = "loopwright-compiled"


class CompiledArtifact(ApiModel):
    """The model compiled to plain arrays, which the predictor serves without scikit-learn."""

    uri: str = Field(max_length=1024, pattern=ARTIFACT_URI_PATTERN,
                     description="s3://bucket/key of the compiled model (a Loopwright container: a "
                                 "JSON header and numeric arrays, no pickle).")
    sha256: str = Field(max_length=64, pattern=SHA256_PATTERN,
                        description="Hex sha256 of the compiled model; checked before it is parsed.")
    format: CompiledFormat = Field(default=CompiledFormat.LOOPWRIGHT_COMPILED,
                                   description="Container format; the version is inside the file.")
    holdout_uri: str = Field(max_length=1024, pattern=ARTIFACT_URI_PATTERN,
                             description="The hold-out rows the verification Job compares the compiled model "
                                         "with the skops model on.")
    holdout_sha256: str = Field(max_length=64, pattern=SHA256_PATTERN,
                                description="Hex sha256 of the hold-out rows.")


class Framework(ApiModel):
    """The library the model was trained with."""

    name: str = Field(default="scikit-learn", max_length=64, description="Framework name.")
    version: str = Field(max_length=64, description="Framework version, e.g. 1.5.2.")


class PrimaryMetric(ApiModel):
    """The metric that ranks versions of this model."""

    name: str = Field(max_length=64, description="Metric name, a key of spec.metrics.")
    value: float = Field(description="Its hold-out value.")


class DatasetLineage(ApiModel):
    """The data the model was trained on."""

    name: str = Field(max_length=253, description="Dataset name.")
    version: str = Field(max_length=71, description="Dataset content digest (sha256:...).")


class PipelineLineage(ApiModel):
    """The pipeline run that produced the model."""

    name: str = Field(max_length=253, description="TrainingPipeline name.")
    run: str = Field(max_length=63, description="Run name (also the Job name).")


class Lineage(ApiModel):
    """Everything needed to reproduce the model."""

    dataset: DatasetLineage | None = Field(default=None, description="Training data.")
    pipeline: PipelineLineage | None = Field(default=None, description="Producing run.")
    image: str | None = Field(default=None, max_length=512, description="Trainer image.")
    estimator: str | None = Field(default=None, max_length=128, description="Estimator class.")
    factory: str | None = Field(default=None, max_length=256,
                                description="The module:function that made the model (spec.model.factory).")
    params: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=64,
        description="Estimator parameters used, each value as JSON text (e.g. \"0.5\", \"null\"); strings "
                    "keep the immutability rule cheap for the API server's CEL cost estimate.")
    seed: int | None = Field(default=None, ge=0, description="Random seed used.")
    inputs_digest: str | None = Field(
        default=None, max_length=71,
        description="The producing run's inputs digest (dataset version, estimator, parameters, split and "
                    "seed, schema): a Drift or Performance run with the same digest registers nothing.")


class ModelVersionSpec(ApiModel):
    """What was trained, where it is stored and how it scored. Immutable after creation."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("self == oldSelf", "ModelVersion spec is immutable; register a new version instead"),
        ("!has(self.primaryMetric) || (self.primaryMetric.name in self.metrics "
         "&& self.metrics[self.primaryMetric.name] == self.primaryMetric.value)",
         "primaryMetric must name one of spec.metrics with the same value"),
    ))

    model: str = Field(min_length=1, max_length=40, pattern=LABEL_NAME_PATTERN,
                       description="Registry name of the model.")
    version: int = Field(ge=1, le=999_999, description="Version number, increasing per model.")
    artifact: Artifact = Field(description="The serialised model.")
    compiled: CompiledArtifact | None = Field(
        default=None,
        description="The model compiled to plain arrays (written by the trainer for the estimators it "
                    "covers). Served instead of the artifact once the verification Job found it identical "
                    "to it on the hold-out rows (condition CompiledVerified).")
    image: str | None = Field(
        default=None, max_length=512, pattern=IMAGE_PATTERN,
        description="Image the verification Job and the predictor run for this version: the image "
                    "holding a factory's code (the pipeline's model.image). Empty: the operator's ml image.")
    framework: Framework | None = Field(default=None, description="Training framework and its version.")
    libraries: dict[str, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict, max_length=32,
        description="Versions of the libraries the artifact depends on (python, numpy, skops, ...).")
    metrics: dict[str, float] = Field(default_factory=dict, max_length=32,
                                      description="Hold-out metrics by name.")
    primary_metric: PrimaryMetric | None = Field(
        default=None, description="The metric that ranks versions; shown by kubectl.")
    lineage: Lineage | None = Field(default=None, description="Data, run and parameters behind the model.")
    profile_uri: str | None = Field(default=None, max_length=1024,
                                    description="Reference profile (features and predictions) written at "
                                                "training time; drift is measured against it.")
    profile_sha256: str | None = Field(default=None, max_length=64, pattern=SHA256_PATTERN,
                                       description="Hex sha256 of the reference profile.")
    report_uri: str | None = Field(default=None, max_length=1024,
                                   description="HTML report of the training run (metrics, confusion matrix "
                                               "or residuals, features, gate decision, champion comparison).")

    @model_validator(mode="after")
    def _check_primary(self) -> ModelVersionSpec:
        pm = self.primary_metric
        if pm is not None and self.metrics.get(pm.name) != pm.value:
            raise ValueError("primaryMetric must name one of spec.metrics with the same value")
        return self


class ModelPhase(StrEnum):
    PENDING = "Pending"
    VALIDATED = "Validated"
    REJECTED = "Rejected"
    FAILED = "Failed"


class Check(ApiModel):
    """One validation check with the numbers behind its verdict."""

    name: str = Field(max_length=128, description="Check name, e.g. threshold:accuracy, champion.")
    metric: str | None = Field(default=None, max_length=64, description="Metric checked.")
    value: float | None = Field(default=None, description="Observed value (absent when unavailable).")
    threshold: float | None = Field(default=None, description="Value it was compared with.")
    passed: bool = Field(description="Whether the check passed.")
    message: str = Field(default="", max_length=1024, description="Human-readable verdict.")


class Champion(ApiModel):
    """The production model the candidate was compared with."""

    name: str = Field(max_length=253, description="ModelVersion name of the champion.")
    version: int = Field(ge=1, description="Its version.")
    metric: str = Field(max_length=64, description="Metric compared.")
    value: float = Field(description="The champion's value of that metric.")


class DeploymentEventType(StrEnum):
    CANARY = "Canary"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    RETIRED = "Retired"


class DeploymentEvent(ApiModel):
    """A step in this version's life behind a Deployment."""

    deployment: str = Field(max_length=253, description="The loopwright Deployment.")
    event: DeploymentEventType = Field(description="Canary, Promoted, RolledBack or Retired.")
    time: datetime = Field(description="When it happened.")
    message: str = Field(default="", max_length=1024, description="Details.")


class ModelVersionStatus(ResourceStatus):
    """Verdict of validation and where the version is served."""

    phase: ModelPhase | None = Field(default=None, description="Pending, Validated, Rejected or Failed.")
    checks: list[Check] = Field(default_factory=list, max_length=32,
                                description="Validation checks with values and thresholds.")
    champion: Champion | None = Field(default=None, description="The champion compared against, if any.")
    aliases: list[str] = Field(default_factory=list, max_length=16,
                               description="Aliases pointing at this version, e.g. production.",
                               json_schema_extra=LIST_SET)
    deployments: list[DeploymentEvent] = Field(default_factory=list, max_length=50,
                                               description="Deployment history, newest first.")
