"""The allow-list of scikit-learn estimators and of the parameters users may set.

This is pure data on purpose: the operator imports it to refuse a bad
TrainingPipeline before any Job starts, and the operator does not ship
scikit-learn. The trainer resolves ``import_path`` only for names found here.

Ranges follow scikit-learn's own parameter constraints, sometimes narrower:
upper bounds on sizes (trees, iterations, depth) keep one spec from
monopolising the cluster. Parameters that Loopwright controls itself are not
settable: ``random_state`` comes from ``split.seed``, and parallelism
(``n_jobs``) from the Job's resources. A unit test checks every entry against
the installed scikit-learn.

A pipeline with its own factory (``spec.model.factory``) bypasses the allow-list
and declares the extra types its saved model needs; :data:`loopwright.artifacts.FORBIDDEN_MODULES`
says which modules' types no declaration can ever make trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from loopwright.api.schema import TaskType

# Parameters set by Loopwright, with the reason shown to the user.
RESERVED: Mapping[str, str] = {
    "random_state": "set from split.seed",
    "n_jobs": "parallelism follows the Job's CPU resources",
    "verbose": "the trainer controls its own logging",
    "warm_start": "every run trains from scratch",
}


@dataclass(frozen=True)
class Range:
    """A numeric interval; ``None`` bounds are unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))

    def __str__(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class ParamSpec:
    """The values one parameter admits: any union of integers, numbers, strings, booleans, null."""

    ints: Range | None = None
    floats: Range | None = None
    choices: tuple[str, ...] = ()
    boolean: bool = False
    nullable: bool = False

    def describe(self) -> str:
        parts: list[str] = []
        if self.ints is not None:
            parts.append(f"an integer in {self.ints}")
        if self.floats is not None:
            parts.append(f"a number in {self.floats}")
        parts.extend(repr(c) for c in self.choices)
        if self.boolean:
            parts.append("true or false")
        if self.nullable:
            parts.append("null")
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]

    def admits(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool):
            return self.boolean
        if isinstance(value, str):
            return value in self.choices
        if isinstance(value, int) and self.ints is not None:
            # As in scikit-learn, an integer is a count when counts are allowed,
            # never silently read as a fraction.
            return value in self.ints
        if isinstance(value, int | float) and self.floats is not None:
            return math.isfinite(value) and float(value) in self.floats
        return False


@dataclass(frozen=True)
class EstimatorSpec:
    """One allowed estimator: where it lives, the task it serves and its settable parameters."""

    import_path: str
    task: TaskType
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    dense_input: bool = False
    """Needs a dense matrix (the one-hot encoding is then not kept sparse)."""


def _int(low: float, high: float | None = None, *, nullable: bool = False) -> ParamSpec:
    return ParamSpec(ints=Range(low, high), nullable=nullable)


def _float(
    low: float | None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    nullable: bool = False,
) -> ParamSpec:
    return ParamSpec(floats=Range(low, high, low_open, high_open), nullable=nullable)


def _choice(*choices: str, nullable: bool = False) -> ParamSpec:
    return ParamSpec(choices=choices, nullable=nullable)


_BOOL = ParamSpec(boolean=True)
_MAX_TREES = 2000
_MAX_DEPTH = 100
_MAX_ITER = 100_000

# Shared by the tree-based ensembles (scikit-learn's BaseDecisionTree constraints).
_TREE: Mapping[str, ParamSpec] = {
    "max_depth": _int(1, _MAX_DEPTH, nullable=True),
    "min_samples_split": ParamSpec(ints=Range(2), floats=Range(0.0, 1.0, low_open=True)),
    "min_samples_leaf": ParamSpec(ints=Range(1), floats=Range(0.0, 1.0, low_open=True, high_open=True)),
    "min_weight_fraction_leaf": _float(0.0, 0.5),
    "max_features": ParamSpec(
        ints=Range(1),
        floats=Range(0.0, 1.0, low_open=True),
        choices=("sqrt", "log2"),
        nullable=True,
    ),
    "max_leaf_nodes": _int(2, nullable=True),
    "min_impurity_decrease": _float(0.0),
    "ccp_alpha": _float(0.0),
}

_FOREST: Mapping[str, ParamSpec] = {
    **_TREE,
    "n_estimators": _int(1, _MAX_TREES),
    "bootstrap": _BOOL,
    "oob_score": _BOOL,
    "max_samples": ParamSpec(ints=Range(1), floats=Range(0.0, 1.0, low_open=True), nullable=True),
}

_GRADIENT_BOOSTING: Mapping[str, ParamSpec] = {
    **_TREE,
    "learning_rate": _float(0.0),
    "n_estimators": _int(1, _MAX_TREES),
    "subsample": _float(0.0, 1.0, low_open=True),
    "validation_fraction": _float(0.0, 1.0, low_open=True, high_open=True),
    "n_iter_no_change": _int(1, nullable=True),
    "tol": _float(0.0),
}

_HIST_GRADIENT_BOOSTING: Mapping[str, ParamSpec] = {
    "learning_rate": _float(0.0, low_open=True),
    "max_iter": _int(1, _MAX_TREES),
    "max_leaf_nodes": _int(2, nullable=True),
    "max_depth": _int(1, _MAX_DEPTH, nullable=True),
    "min_samples_leaf": _int(1),
    "l2_regularization": _float(0.0),
    "max_features": _float(0.0, 1.0, low_open=True),
    "max_bins": _int(2, 255),
    "early_stopping": ParamSpec(choices=("auto",), boolean=True),
    "n_iter_no_change": _int(1),
    "validation_fraction": _float(0.0, 1.0, low_open=True, high_open=True, nullable=True),
    "tol": _float(0.0),
}

ESTIMATORS: Mapping[str, EstimatorSpec] = {
    "LogisticRegression": EstimatorSpec(
        "sklearn.linear_model.LogisticRegression",
        TaskType.CLASSIFICATION,
        {
            "C": _float(0.0, low_open=True),
            "l1_ratio": _float(0.0, 1.0, nullable=True),
            "fit_intercept": _BOOL,
            "intercept_scaling": _float(0.0, low_open=True),
            "class_weight": _choice("balanced", nullable=True),
            "solver": _choice("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga"),
            "max_iter": _int(1, _MAX_ITER),
            "tol": _float(0.0),
        },
    ),
    "LinearRegression": EstimatorSpec(
        "sklearn.linear_model.LinearRegression",
        TaskType.REGRESSION,
        {"fit_intercept": _BOOL, "positive": _BOOL},
    ),
    "Ridge": EstimatorSpec(
        "sklearn.linear_model.Ridge",
        TaskType.REGRESSION,
        {
            "alpha": _float(0.0),
            "fit_intercept": _BOOL,
            "max_iter": _int(1, _MAX_ITER, nullable=True),
            "tol": _float(0.0),
            "solver": _choice("auto", "svd", "cholesky", "lsqr", "sparse_cg", "sag", "saga", "lbfgs"),
            "positive": _BOOL,
        },
    ),
    "RandomForestClassifier": EstimatorSpec(
        "sklearn.ensemble.RandomForestClassifier",
        TaskType.CLASSIFICATION,
        {
            **_FOREST,
            "criterion": _choice("gini", "entropy", "log_loss"),
            "class_weight": _choice("balanced", "balanced_subsample", nullable=True),
        },
    ),
    "RandomForestRegressor": EstimatorSpec(
        "sklearn.ensemble.RandomForestRegressor",
        TaskType.REGRESSION,
        {**_FOREST, "criterion": _choice("squared_error", "absolute_error", "poisson")},
    ),
    "ExtraTreesClassifier": EstimatorSpec(
        "sklearn.ensemble.ExtraTreesClassifier",
        TaskType.CLASSIFICATION,
        {
            **_FOREST,
            "criterion": _choice("gini", "entropy", "log_loss"),
            "class_weight": _choice("balanced", "balanced_subsample", nullable=True),
        },
    ),
    "ExtraTreesRegressor": EstimatorSpec(
        "sklearn.ensemble.ExtraTreesRegressor",
        TaskType.REGRESSION,
        {**_FOREST, "criterion": _choice("squared_error", "absolute_error", "poisson")},
    ),
    "GradientBoostingClassifier": EstimatorSpec(
        "sklearn.ensemble.GradientBoostingClassifier",
        TaskType.CLASSIFICATION,
        {**_GRADIENT_BOOSTING, "loss": _choice("log_loss", "exponential")},
    ),
    "GradientBoostingRegressor": EstimatorSpec(
        "sklearn.ensemble.GradientBoostingRegressor",
        TaskType.REGRESSION,
        {
            **_GRADIENT_BOOSTING,
            "loss": _choice("squared_error", "absolute_error", "huber", "quantile"),
            "alpha": _float(0.0, 1.0, low_open=True, high_open=True),
        },
    ),
    "HistGradientBoostingClassifier": EstimatorSpec(
        "sklearn.ensemble.HistGradientBoostingClassifier",
        TaskType.CLASSIFICATION,
        {**_HIST_GRADIENT_BOOSTING, "class_weight": _choice("balanced", nullable=True)},
        dense_input=True,
    ),
    "HistGradientBoostingRegressor": EstimatorSpec(
        "sklearn.ensemble.HistGradientBoostingRegressor",
        TaskType.REGRESSION,
        {
            **_HIST_GRADIENT_BOOSTING,
            "loss": _choice("squared_error", "absolute_error", "gamma", "poisson", "quantile"),
            "quantile": _float(0.0, 1.0, nullable=True),
        },
        dense_input=True,
    ),
}


def task_of(estimator: str) -> TaskType:
    """The task an allowed estimator serves; ``KeyError`` for anything else."""
    return ESTIMATORS[estimator].task


def validate(estimator: str, params: Mapping[str, object], *, task: str | None = None) -> list[str]:
    """Every reason to refuse this estimator with these params (empty when acceptable).

    With ``task`` (the dataset's label task), an estimator serving the other
    task is refused too, since its Job could only fail.
    """
    spec = ESTIMATORS.get(estimator)
    if spec is None:
        return [f"estimator {estimator!r} is not allowed; choose one of: {', '.join(sorted(ESTIMATORS))}"]
    errors: list[str] = []
    if task is not None and task != spec.task:
        errors.append(f"{estimator} is a {spec.task} estimator but the dataset's label is for {task}")
    for name, value in params.items():
        if name in RESERVED:
            errors.append(f"{estimator}: parameter {name!r} cannot be set ({RESERVED[name]})")
            continue
        param = spec.params.get(name)
        if param is None:
            allowed = ", ".join(sorted(spec.params)) or "none"
            errors.append(f"{estimator}: unknown or disallowed parameter {name!r} (allowed: {allowed})")
        elif not param.admits(value):
            errors.append(f"{estimator}: parameter {name!r} must be {param.describe()}, got {value!r}")
    return errors
