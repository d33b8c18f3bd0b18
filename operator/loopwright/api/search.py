"""Hyperparameter search of a TrainingPipeline: the space, the trials and their results.

The trials run as one Indexed Job (a pod per trial index, ``parallelism`` at a time); each pod
derives its parameters from its index alone (:mod:`loopwright.core.training.search`), so the
operator knows every trial's parameters without asking the pods, and a retried pod trains the
same trial again.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from loopwright.api._base import ApiModel
from loopwright.api.common import ParamValue, rules

MAX_TRIALS = 64
"""Most trials one run may start (a grid's size included)."""
MAX_PARALLELISM = 16
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""An estimator parameter, or a ``step__param`` path into a factory's Pipeline."""


class SearchStrategy(StrEnum):
    GRID = "grid"
    RANDOM = "random"


class Dimension(ApiModel):
    """The values one parameter takes: a list (grid or random), or a numeric range (random only).

    CEL cannot see ``values`` (a list of values of any JSON type has no CEL type), so "values or a
    range, not both, not neither" is checked by the model, at reconcile (InvalidSpec naming the field);
    the rules on the range are the schema's."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("has(self.min) == has(self.max)", "a range needs both min and max"),
        ("!has(self.min) || self.min < self.max", "min must be below max"),
        ("!has(self.min) || !self.log || self.min > 0.0", "a log range needs min > 0"),
    ))

    values: list[ParamValue] | None = Field(default=None, min_length=1, max_length=64,
                                            description="The values to try.")
    min: float | None = Field(default=None, description="Lower end of a range (random search).")
    max: float | None = Field(default=None, description="Upper end of a range (random search).")
    log: bool = Field(default=False, description="Sample the range uniformly in log space (e.g. C, alpha).")
    integer: bool = Field(default=False, description="Round samples of the range to integers.")

    @model_validator(mode="after")
    def _check(self) -> Dimension:
        ranged = self.min is not None or self.max is not None
        if (self.values is not None) == ranged:
            raise ValueError("a dimension is either values or a min/max range")
        if ranged:
            if self.min is None or self.max is None:
                raise ValueError("a range needs both min and max")
            if not self.min < self.max:
                raise ValueError("min must be below max")
            if self.log and self.min <= 0.0:
                raise ValueError("a log range needs min > 0")
        return self


class Search(ApiModel):
    """Try several parameter sets, keep the best (on a validation split of the training part)."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("self.strategy == 'random' || self.space.all(k, !has(self.space[k].min) && !has(self.space[k].max))",
         "grid search takes lists of values only (ranges are for random search)"),
        ("self.strategy == 'random' || !has(self.trials)",
         "trials is for random search: a grid runs each of its points once"),
    ))

    strategy: SearchStrategy = Field(default=SearchStrategy.RANDOM,
                                     description="grid: every combination of the values, in order; random: "
                                                 "trials samples, reproducible from seed.")
    space: dict[str, Dimension] = Field(
        min_length=1, max_length=16,
        description="Parameter name (an estimator parameter, or step__param for a factory's "
                    "Pipeline) to the values it takes. Merged over model.params.",
        json_schema_extra=rules((f"self.all(k, k.matches('{PARAM_NAME_PATTERN}'))",
                                 "space keys are parameter names (letters, digits, _; step__param)")))
    trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS,
                               description=f"Random search: how many trials (default 16, at most "
                                           f"{MAX_TRIALS}). A grid's size must not exceed {MAX_TRIALS}.")
    parallelism: int = Field(default=4, ge=1, le=MAX_PARALLELISM,
                             description="Trial pods running at once (Kubernetes spreads them over nodes).")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the random samples.")
    validation_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0,
        description="Share of the training part each trial is scored on (the hold-out is never "
                    "seen by the search; the gates apply to it afterwards, as without search).")

    @model_validator(mode="after")
    def _check(self) -> Search:
        if any(not re.match(PARAM_NAME_PATTERN, k) for k in self.space):
            raise ValueError("space keys are parameter names (letters, digits, _; step__param)")
        if self.strategy == SearchStrategy.GRID:
            if any(d.values is None for d in self.space.values()):
                raise ValueError("grid search takes lists of values only (ranges are for random search)")
            if self.trials is not None:
                raise ValueError("trials is for random search: a grid runs each of its points once")
        return self


class TrialPhase(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Trial(ApiModel):
    """One trial of a run's search: its parameters and its validation score."""

    index: int = Field(ge=0, lt=MAX_TRIALS, description="The trial's completion index in the search Job.")
    params: dict[str, ParamValue] = Field(default_factory=dict, max_length=16,
                                          description="The searched parameters this trial used.")
    phase: TrialPhase = Field(description="Succeeded (scored) or Failed.")
    score: float | None = Field(default=None, description="Validation score in the primary metric.")
    message: str | None = Field(default=None, max_length=512, description="Why the trial failed.")


class SearchResult(ApiModel):
    """What a run's search found."""

    job: str = Field(max_length=63, description="The Indexed Job that ran the trials.")
    metric: str = Field(max_length=64, description="The primary metric the trials were ranked by.")
    best: int | None = Field(default=None, ge=0, description="Index of the best trial (trained on the "
                                                             "whole training part).")
    trials: list[Trial] = Field(default_factory=list, max_length=MAX_TRIALS,
                                description="Every trial, by index.")
