"""Dataset: a versioned, validated table in S3 (CSV or Parquet; one object or a prefix)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from loopwright.api._base import ApiModel
from loopwright.api.common import (
    S3_URI_PATTERN,
    Duration,
    ObjectReference,
    ResourceStatus,
    section,
)
from loopwright.api.podtemplate import PodTemplate
from loopwright.api.schema import DatasetSchema

DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"


class DataFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


class DataSource(ApiModel):
    """Where the table lives."""

    uri: str = Field(
        max_length=1024, pattern=S3_URI_PATTERN,
        description="s3://bucket/key for one object, or s3://bucket/prefix/ (trailing slash) for every "
                    "object under a prefix, read in key order.")
    format: DataFormat = Field(default=DataFormat.CSV, description="File format: csv (with a header row) "
                                                                   "or parquet.")
    credentials_secret_ref: ObjectReference | None = Field(
        default=None,
        description="Secret in this namespace with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for "
                    "this source: the operator checks the source with them (which needs the ClusterRole "
                    "loopwright-operator-secrets bound in this namespace) and the profiling Job reads it "
                    "with them; defaults to the operator's artifact-store credentials.")


class DatasetValidation(ApiModel):
    """Gates a version must pass before it is marked Validated (invalid data never trains)."""

    min_rows: int = Field(default=1, ge=1,
                          description="Fewest rows a version must have.")
    max_missing_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Largest fraction of missing values allowed in any nullable column "
                    "(non-nullable columns allow none).")
    max_invalid_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Largest fraction of rows allowed to break the schema (values outside min/max or "
                    "allowedValues, unparsable numbers).")


class DatasetSpec(ApiModel):
    """The desired table: where it is, what it must look like, how often to look for a new version."""

    source: DataSource = Field(description="Where the table lives.")
    schema_: DatasetSchema = Field(alias="schema", description="Declared columns and label.")
    validation: DatasetValidation = section(
        DatasetValidation, description="Quality gates a version must pass to be Validated.")
    refresh_interval: Duration = Field(
        default="5m",
        description="How often to check the source for a new version (a cheap ETag/listing check; the "
                    "profiling Job runs only when something changed).")
    pod_template: PodTemplate | None = Field(
        default=None, description="Scheduling, identity and resources of the profiling pods, over the "
                                  "operator's defaults.")


class Anomaly(ApiModel):
    """One way the data breaks the schema or the validation gates."""

    column: str | None = Field(default=None, max_length=253,
                               description="Column concerned; absent for table-level anomalies.")
    kind: str = Field(max_length=64, description="Kind of anomaly, e.g. MissingColumn, OutOfRange, "
                                                 "UnknownCategory, TooManyMissing, TooFewRows.")
    count: int | None = Field(default=None, ge=0, description="Number of offending values or rows.")
    message: str = Field(max_length=1024, description="Human-readable details.")


class DatasetVersionRecord(ApiModel):
    """A version seen earlier, kept for lineage and rollback."""

    version: str = Field(max_length=71, pattern=DIGEST_PATTERN, description="Content digest.")
    rows: int = Field(ge=0, description="Row count.")
    validated: bool = Field(description="Whether this version passed validation.")
    profile_uri: str | None = Field(default=None, max_length=1024, description="Reference profile.")
    observed_time: datetime = Field(description="When the operator first saw this version.")


class DatasetStatus(ResourceStatus):
    """The latest version found, its profile and its verdict."""

    version: str | None = Field(
        default=None, max_length=71, pattern=DIGEST_PATTERN,
        description="Content digest (sha256 over the bytes) of the latest version.")
    short_version: str | None = Field(default=None, max_length=12,
                                      description="First 12 hex digits of the digest, for display.")
    rows: int | None = Field(default=None, ge=0, description="Row count of the latest version.")
    profile_uri: str | None = Field(default=None, max_length=1024,
                                    description="S3 URI of the reference profile of the latest version.")
    validated_version: str | None = Field(
        default=None, max_length=71, pattern=DIGEST_PATTERN,
        description="Digest of the newest version that passed validation; pipelines train on this one.")
    source_fingerprint: str | None = Field(
        default=None, max_length=1024,
        description="Cheap change marker of the source (ETag, version id or listing hash).")
    last_checked_time: datetime | None = Field(default=None,
                                               description="When the source was last checked.")
    anomalies: list[Anomaly] = Field(default_factory=list, max_length=100,
                                     description="Anomalies found in the latest version.")
    history: list[DatasetVersionRecord] = Field(default_factory=list, max_length=20,
                                                description="Earlier versions, newest first.")
