"""The table schema a Dataset declares; shared by the profiler, trainer and predictor."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from loopwright.api._base import ApiModel
from loopwright.api.common import list_map, rules


class ColumnType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class ColumnSpec(ApiModel):
    """One feature column of the table."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("self.type == 'categorical' || !has(self.allowedValues)",
         "allowedValues applies to categorical columns only"),
        ("self.type == 'numeric' || (!has(self.min) && !has(self.max))",
         "min and max apply to numeric columns only"),
        ("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max"),
    ))

    name: str = Field(min_length=1, max_length=253, description="Column name as it appears in the data.")
    type: ColumnType = Field(description="numeric (scaled) or categorical (one-hot encoded).")
    nullable: bool = Field(default=False, description="Whether missing values are allowed in this column.")
    min: float | None = Field(default=None, description="Smallest allowed value (numeric columns only).")
    max: float | None = Field(default=None, description="Largest allowed value (numeric columns only).")
    allowed_values: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None,
        max_length=1000,
        description="The closed set of allowed values (categorical columns only).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _check_domain(self) -> ColumnSpec:
        if self.type == ColumnType.NUMERIC and self.allowed_values is not None:
            raise ValueError(f"column {self.name!r}: allowedValues applies to categorical columns only")
        if self.type == ColumnType.CATEGORICAL and (self.min is not None or self.max is not None):
            raise ValueError(f"column {self.name!r}: min and max apply to numeric columns only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min must not exceed max")
        return self


class LabelSpec(ApiModel):
    """The target column and the learning task it implies."""

    name: str = Field(min_length=1, max_length=253, description="Name of the label column.")
    task: TaskType = Field(description="classification or regression.")


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class DatasetSchema(ApiModel):
    """Declared shape of the table: the features, the label, and how strict to be."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("!self.columns.exists(c, c.name == self.label.name)",
         "the label column must not also be listed as a feature column"),
    ))

    label: LabelSpec = Field(description="The label column.")
    columns: list[ColumnSpec] = Field(
        min_length=1, max_length=512, description="The feature columns (names are unique).",
        json_schema_extra=list_map("name"))
    strict: bool = Field(default=True, description="Reject columns that the schema does not declare.")

    @model_validator(mode="after")
    def _check_names(self) -> DatasetSchema:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        if self.label.name in names:
            raise ValueError("the label column must not also be listed as a feature column")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]


LabelSpec.model_rebuild()
