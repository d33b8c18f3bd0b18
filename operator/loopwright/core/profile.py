"""The reference profile: frozen bins of every feature and of the predictions.

The profiler and the trainer write a :class:`Profile`; the predictor counts live
values into the same bins and the drift checker compares those counts with the
reference counts. Because the bin edges are frozen at training time, drift needs
no raw reference data, only the counts in this file.

Binning is the predictor's hot path (every request) and the drift benchmark's
(millions of rows), so no Python code runs per value: numeric values are
compared with the edges in numpy, categorical values are looked up in a dict
from C (``map``), or binary-searched when they already are a numpy string
array. Categorical values are compared as strings (``str(value)``). Index
conventions, shared by every reader:

* numeric: ``searchsorted(edges, x, side="right")`` gives ``0..len(edges)``;
* categorical: the position in ``categories``; an unseen value gets the extra
  last bin ``len(categories)``;
* a missing value (``None`` or NaN) gets ``n_bins``, one past the last bin, so a
  single ``np.bincount`` yields the counts and the missing count together.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import Field, model_validator

from loopwright.api._base import ApiModel
from loopwright.api.schema import DatasetSchema, TaskType

MAX_BINS = 10
MAX_CATEGORIES = 50
PROFILE_MAX_BINS = 1000
"""The most bins a feature profile may have (profiling makes at most MAX_CATEGORIES + 1): a profile
is read from a URI anyone who can create a ModelVersion or DriftPolicy names, and its bins size the
predictor's counters and every /metrics answer."""

# Quantiles whose values become the inner edges: deciles give at most 10 bins.
_QUANTILES = np.linspace(0.0, 1.0, MAX_BINS + 1)[1:-1]

IntArray = NDArray[np.intp]

# Numeric binning by comparisons (see bin_numeric) for few edges and many values.
_COMPARE_MAX_EDGES = 32
_COMPARE_MIN_VALUES = 1024


class FeatureKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class FeatureProfile(ApiModel):
    """The reference distribution of one feature (or of the predictions) in frozen bins."""

    kind: FeatureKind = Field(description="numeric (edges) or categorical (categories).")
    edges: list[float] | None = Field(
        default=None,
        description="Numeric only: inner cut points, strictly increasing; len(edges)+1 bins.",
    )
    categories: list[str] | None = Field(
        default=None,
        description="Categorical only: reference values, sorted; unseen values go to an extra last bin.",
    )
    counts: list[int] = Field(description="Reference count per bin (missing values excluded).")
    missing: int = Field(default=0, ge=0, description="Number of missing (null or NaN) values.")
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check_bins(self) -> FeatureProfile:
        if len(self.counts) > PROFILE_MAX_BINS:
            raise ValueError(f"{len(self.counts)} bins, at most {PROFILE_MAX_BINS} allowed")
        if self.kind == FeatureKind.NUMERIC:
            if self.edges is None or self.categories is not None:
                raise ValueError("a numeric feature has edges and no categories")
            if not all(math.isfinite(e) for e in self.edges):
                raise ValueError("edges must be finite numbers (no NaN or infinity)")
            if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError("edges must be strictly increasing")
            expected = len(self.edges) + 1
        else:
            if self.categories is None or self.edges is not None:
                raise ValueError("a categorical feature has categories and no edges")
            if self.categories != sorted(set(self.categories)):
                raise ValueError("categories must be sorted and unique")
            expected = len(self.categories) + 1
        if len(self.counts) != expected:
            raise ValueError(f"counts must have {expected} entries, not {len(self.counts)}")
        if any(c < 0 for c in self.counts):
            raise ValueError("counts must not be negative")
        return self

    @property
    def n_bins(self) -> int:
        """Number of bins; also the index given to missing values."""
        return len(self.counts)

    @cached_property
    def _edges_array(self) -> NDArray[np.float64]:
        return np.asarray(self.edges, dtype=np.float64)

    @cached_property
    def _categories_array(self) -> NDArray[np.str_]:
        return np.asarray(self.categories if self.categories else [], dtype=np.str_)

    @cached_property
    def _category_positions(self) -> _Positions:
        return _Positions(self.categories or [])

    def bin_index(self, values: ArrayLike) -> IntArray:
        """Bin index of every value; see the module docstring for the conventions."""
        if self.kind == FeatureKind.NUMERIC:
            return bin_numeric(values, self._edges_array)
        return _bin_categorical(values, self._categories_array, self._category_positions)

    def count(self, values: ArrayLike) -> tuple[NDArray[np.int64], int]:
        """Counts per bin and the missing count of ``values``, ready to compare with ``counts``."""
        return count(self.bin_index(values), n_bins=self.n_bins)


class Profile(ApiModel):
    """Everything the predictor and the drift checker need about the reference data."""

    rows: int = Field(ge=0, description="Number of rows profiled.")
    features: dict[str, FeatureProfile] = Field(description="Profile of each feature, by column name.")
    prediction: FeatureProfile | None = Field(
        default=None,
        description="Distribution of the model's predictions on the hold-out set.",
    )
    label: FeatureProfile | None = Field(
        default=None,
        description="Distribution of the label column in the profiled rows (absent when unknown).",
    )
    # ``schema`` would shadow a BaseModel attribute, hence the explicit alias.
    dataset_schema: DatasetSchema | None = Field(default=None, alias="schema")
    task: TaskType | None = None
    classes: list[str] | None = None


def numeric_edges(values: ArrayLike, *, max_bins: int = MAX_BINS) -> list[float]:
    """Quantile-based inner edges of a numeric column: at most ``max_bins`` bins.

    Edges are taken with the ``inverted_cdf`` method so they are values of the
    data, which keeps the bins of discrete columns aligned with their values.
    A constant column gets two edges hugging its value so that a shift either
    way lands in a bin of its own; a column without finite values gets none.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return []
    quantiles = _QUANTILES if max_bins == MAX_BINS else np.linspace(0.0, 1.0, max_bins + 1)[1:-1]
    lo, hi = x.min(), x.max()
    if lo == hi:
        return [float(lo), float(np.nextafter(lo, np.inf))]
    edges = np.unique(np.quantile(x, quantiles, method="inverted_cdf"))
    return [float(e) for e in edges]


def top_categories(values: ArrayLike, *, max_categories: int = MAX_CATEGORIES) -> list[str]:
    """The most frequent ``max_categories`` values (as strings), sorted for binary search.

    Ties in frequency are broken by the value so the result is deterministic.
    """
    categories = profile_categorical(values, max_categories=max_categories).categories
    return categories or []


def bin_numeric(values: ArrayLike, edges: NDArray[np.float64]) -> IntArray:
    """Numeric bin index per value; NaN (and ``None``) get ``len(edges) + 1``."""
    x = np.asarray(values, dtype=np.float64)
    if edges.size <= _COMPARE_MAX_EDGES and x.size >= _COMPARE_MIN_VALUES:
        # The number of edges <= x, which is what searchsorted(side="right")
        # returns, summed from one vectorised comparison per edge: for a
        # handful of edges this is several times faster than a binary search
        # per value.
        small = np.zeros(x.shape, dtype=np.uint8)
        for edge in edges:
            small += x >= edge
        idx = small.astype(np.intp)
    else:
        idx = np.searchsorted(edges, x, side="right")
    nan = np.isnan(x)
    if nan.any():
        idx[nan] = edges.size + 1
    return idx


def bin_categorical(values: ArrayLike, categories: NDArray[np.str_]) -> IntArray:
    """Categorical bin index per value against *sorted* ``categories``.

    Values are compared as strings. Unseen values get ``len(categories)``,
    missing ones ``len(categories) + 1``.
    """
    return _bin_categorical(values, categories, _Positions(categories.tolist()))


def count(indices: IntArray, *, n_bins: int) -> tuple[NDArray[np.int64], int]:
    """Counts per bin (length ``n_bins``) and the number of missing values (index ``n_bins``)."""
    totals = np.bincount(indices, minlength=n_bins + 1)
    return totals[:n_bins].astype(np.int64, copy=False), int(totals[n_bins])


def profile_numeric(values: ArrayLike, *, max_bins: int = MAX_BINS) -> FeatureProfile:
    """Reference profile of a numeric column: quantile edges, counts and moments."""
    x = np.asarray(values, dtype=np.float64)
    edges = numeric_edges(x, max_bins=max_bins)
    counts, missing = count(bin_numeric(x, np.asarray(edges, dtype=np.float64)), n_bins=len(edges) + 1)
    finite = x[np.isfinite(x)]
    moments: dict[str, Any] = {}
    if finite.size:
        moments = {
            "mean": float(finite.mean()),
            "std": float(finite.std()),
            "min": float(finite.min()),
            "max": float(finite.max()),
        }
    return FeatureProfile(
        kind=FeatureKind.NUMERIC,
        edges=edges,
        counts=[int(c) for c in counts],
        missing=missing,
        **moments,
    )


def profile_categorical(
    values: ArrayLike,
    *,
    categories: Sequence[str] | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> FeatureProfile:
    """Reference profile of a categorical column.

    ``categories`` fixes the bins (e.g. a classifier's classes, so that a class
    never predicted on the hold-out still has its bin); otherwise the most
    frequent values are used.
    """
    items = values if isinstance(values, list | tuple) else np.asarray(values).ravel().tolist()
    counts: dict[str, int] = {}
    missing = 0
    # Counter hashes in C; only the handful of distinct values is looked at in Python.
    for value, n in Counter(items).items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing += n
        else:
            key = value if isinstance(value, str) else str(value)
            counts[key] = counts.get(key, 0) + n
    return categorical_from_counts(
        counts, missing=missing, categories=categories, max_categories=max_categories)


def categorical_from_counts(
    counts: Mapping[str, int],
    *,
    missing: int = 0,
    categories: Sequence[str] | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> FeatureProfile:
    """Reference profile of a categorical column from its value counts (missing values excluded).

    For callers that count faster than numpy can (pandas' hashing
    ``value_counts``). Values outside the kept categories land in the unseen
    bin, exactly as they would when binned later.
    """
    if categories is not None:
        kept = sorted({str(c) for c in categories})
    else:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = sorted(k for k, _ in ranked[:max_categories])
    bins = [int(counts.get(c, 0)) for c in kept]
    bins.append(int(sum(counts.values())) - sum(bins))
    return FeatureProfile(kind=FeatureKind.CATEGORICAL, categories=kept, counts=bins, missing=missing)


class _Positions(dict[str, int]):
    """Category -> bin index; anything else is resolved in ``__missing__``.

    Known values stay on the dict's C lookup path, so ``map(positions.__getitem__,
    values)`` bins a million Python strings in about a tenth of a second; only
    unseen and missing values pay for a Python call.
    """

    def __init__(self, categories: Sequence[str]) -> None:
        super().__init__((c, i) for i, c in enumerate(categories))
        self._unseen = len(categories)

    def __missing__(self, value: object) -> int:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self._unseen + 1
        if not isinstance(value, str):
            return self.get(str(value), self._unseen)
        return self._unseen


def _bin_categorical(values: ArrayLike, categories: NDArray[np.str_], positions: _Positions) -> IntArray:
    """Binary search for fixed-width string arrays (no missing values possible), dict lookups otherwise."""
    if isinstance(values, list | tuple):
        items: Sequence[Any] = values
    else:
        arr = np.asarray(values)
        if arr.dtype.kind == "U":
            return _index_strings(arr, categories)
        items = arr.ravel().tolist()
    return np.fromiter(map(positions.__getitem__, items), dtype=np.intp, count=len(items))


def _index_strings(strings: NDArray[np.str_], categories: NDArray[np.str_]) -> IntArray:
    n = categories.size
    if n == 0:
        return np.zeros(strings.shape, dtype=np.intp)
    idx = np.searchsorted(categories, strings)
    hit = categories[np.minimum(idx, n - 1)] == strings
    idx[~hit] = n
    return idx
