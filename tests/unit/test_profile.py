import itertools
import math

import numpy as np
import pytest
from pydantic import ValidationError

from loopwright.api.schema import ColumnSpec, ColumnType, DatasetSchema, LabelSpec, TaskType
from loopwright.core.profile import (
    FeatureKind,
    FeatureProfile,
    Profile,
    bin_categorical,
    bin_numeric,
    categorical_from_counts,
    count,
    numeric_edges,
    profile_categorical,
    profile_numeric,
    top_categories,
)


def test_edges_of_continuous_column_are_deciles_and_strictly_increasing():
    x = np.random.default_rng(1).normal(size=10_000)
    edges = numeric_edges(x)
    assert len(edges) == 9
    assert all(b > a for a, b in itertools.pairwise(edges))
    assert edges[4] == pytest.approx(np.median(x), abs=0.01)


def test_edges_ignore_nan_and_inf():
    x = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, np.inf, -np.inf, np.nan])
    edges = numeric_edges(x)
    assert all(math.isfinite(e) for e in edges)
    assert set(edges) <= {1.0, 2.0, 3.0, 4.0}


def test_edges_of_discrete_column_are_data_values():
    x = np.array([0] * 70 + [1] * 30)
    assert numeric_edges(x) == [0.0, 1.0]


def test_constant_column_isolates_its_value():
    edges = numeric_edges([5.0, 5.0, 5.0])
    assert edges[0] == 5.0
    assert edges[1] > 5.0
    idx = bin_numeric([4.0, 5.0, 6.0], np.asarray(edges))
    assert idx.tolist() == [0, 1, 2]


def test_edges_of_empty_or_all_nan_column():
    assert numeric_edges([]) == []
    assert numeric_edges([np.nan, np.nan]) == []


def test_edges_respect_max_bins():
    x = np.arange(1000.0)
    assert len(numeric_edges(x, max_bins=4)) == 3


def test_bin_numeric_right_side_and_missing():
    edges = np.array([1.0, 2.0])
    idx = bin_numeric([0.5, 1.0, 1.5, 2.0, 9.0, np.nan, None], edges)
    assert idx.tolist() == [0, 1, 1, 2, 2, 3, 3]


def test_top_categories_sorted_capped_by_frequency():
    values = ["b"] * 5 + ["a"] * 3 + ["c"] * 1 + ["d"] * 3 + [None]
    assert top_categories(values, max_categories=3) == ["a", "b", "d"]
    assert top_categories(values) == ["a", "b", "c", "d"]


def test_top_categories_default_cap_is_fifty():
    values = [f"v{i:03d}" for i in range(80) for _ in range(i + 1)]
    cats = top_categories(values)
    assert len(cats) == 50
    assert cats[0] == "v030"
    assert cats == sorted(cats)


def test_bin_categorical_unseen_and_missing():
    cats = np.array(["a", "b", "c"])
    values = ["c", "a", "zzz", None, float("nan"), "b", "0"]
    assert bin_categorical(values, cats).tolist() == [2, 0, 3, 4, 4, 1, 3]


def test_bin_categorical_numbers_compare_as_strings():
    cats = np.array(["1", "2"])
    assert bin_categorical(np.array([1, 2, 3]), cats).tolist() == [0, 1, 2]


def test_bin_categorical_without_categories():
    assert bin_categorical(["a", None], np.array([], dtype=str)).tolist() == [0, 1]


def test_small_and_large_paths_agree():
    fp = profile_categorical(["x", "y", "z"] * 10)
    values = ["x", "q", None, "z", 7, float("nan")]
    small = fp.bin_index(values)
    large = fp.bin_index(np.asarray(values * 10, dtype=object))[: len(values)]
    assert small.tolist() == large.tolist() == [0, 3, 4, 2, 3, 4]


def test_count_separates_missing():
    counts, missing = count(np.array([0, 0, 2, 3, 3, 3]), n_bins=3)
    assert counts.tolist() == [2, 0, 1]
    assert missing == 3


def test_profile_numeric_counts_and_moments():
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    fp = profile_numeric(x)
    assert fp.kind == FeatureKind.NUMERIC
    assert sum(fp.counts) == 4
    assert fp.missing == 1
    assert fp.mean == pytest.approx(2.5)
    assert fp.std == pytest.approx(np.std([1, 2, 3, 4]))
    assert (fp.min, fp.max) == (1.0, 4.0)
    counts, missing = fp.count(x)
    assert counts.tolist() == fp.counts
    assert missing == 1


def test_profile_numeric_all_missing_has_no_moments():
    fp = profile_numeric([np.nan, np.nan])
    assert fp.edges == []
    assert fp.counts == [0]
    assert fp.missing == 2
    assert fp.mean is None


def test_profile_categorical_with_fixed_classes_keeps_unpredicted_class():
    fp = profile_categorical(np.array(["1", "1", "0"]), categories=["0", "1", "2"])
    assert fp.categories == ["0", "1", "2"]
    assert fp.counts == [1, 2, 0, 0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "numeric", "edges": [2.0, 1.0], "counts": [0, 0, 0]},
        {"kind": "numeric", "edges": [1.0, 1.0], "counts": [0, 0, 0]},
        {"kind": "numeric", "edges": [1.0], "counts": [0]},
        {"kind": "numeric", "categories": ["a"], "counts": [0, 0]},
        {"kind": "categorical", "categories": ["b", "a"], "counts": [0, 0, 0]},
        {"kind": "categorical", "categories": ["a"], "counts": [1, -1]},
        {"kind": "categorical", "edges": [1.0], "categories": ["a"], "counts": [0, 0]},
        # A hostile profile (fault suite, case 6): NaN compares false, so it passed "increasing".
        {"kind": "numeric", "edges": [0.0, float("nan"), 1.0], "counts": [0, 0, 0, 0]},
        {"kind": "numeric", "edges": [float("-inf"), 1.0], "counts": [0, 0, 0]},
        {"kind": "numeric", "edges": [float(e) for e in range(1000)], "counts": [0] * 1001},
    ],
)
def test_feature_profile_rejects_inconsistent_bins(kwargs):
    with pytest.raises(ValidationError):
        FeatureProfile(**kwargs)


def test_profile_wire_round_trip_uses_camel_case_and_schema_key():
    schema = DatasetSchema(
        label=LabelSpec(name="y", task=TaskType.CLASSIFICATION),
        columns=[
            ColumnSpec(name="a", type=ColumnType.NUMERIC),
            ColumnSpec(name="c", type=ColumnType.CATEGORICAL),
        ],
    )
    profile = Profile(
        rows=3,
        features={"a": profile_numeric([1.0, 2.0, 3.0]), "c": profile_categorical(["u", "v", "u"])},
        prediction=profile_categorical(["0", "1", "1"], categories=["0", "1"]),
        dataset_schema=schema,
        task=TaskType.CLASSIFICATION,
        classes=["0", "1"],
    )
    wire = profile.to_wire()
    assert "schema" in wire
    assert wire["schema"]["label"]["name"] == "y"
    back = Profile.model_validate(wire)
    assert back == profile
    assert back.features["c"].count(["u", "w"])[0].tolist() == [1, 0, 1]


def test_categorical_from_counts_equals_profiling_the_values():
    values = ["b"] * 5 + ["a"] * 3 + ["c"] + ["d"] * 3 + [None, None]
    from_counts = categorical_from_counts({"a": 3, "b": 5, "c": 1, "d": 3}, missing=2, max_categories=3)
    assert from_counts == profile_categorical(values, max_categories=3)
    assert from_counts.counts == [3, 5, 3, 1]
    fixed = categorical_from_counts({"0": 4, "7": 1}, categories=["0", "1"])
    assert fixed.counts == [4, 0, 1]


def test_large_numeric_batches_bin_exactly_like_searchsorted():
    rng = np.random.default_rng(3)
    edges = np.array(numeric_edges(rng.normal(size=5000)))
    x = np.concatenate([rng.normal(size=5000), edges, [np.nan, np.inf, -np.inf]])
    idx = bin_numeric(x, edges)
    expected = np.searchsorted(edges, x, side="right")
    expected[np.isnan(x)] = edges.size + 1
    assert idx.dtype == np.intp
    assert idx.tolist() == expected.tolist()


def test_categorical_batches_of_every_input_form_agree():
    fp = profile_categorical(["a", "b", "c"])
    values = ["c", "zz", None, "a", 1, float("nan")] * 300
    expected = [2, 3, 4, 0, 3, 4] * 300
    assert fp.bin_index(values).tolist() == expected
    assert fp.bin_index(np.asarray(values, dtype=object)).tolist() == expected
    strings = np.array(["c", "zz", "a"] * 500)
    assert fp.bin_index(strings).tolist() == [2, 3, 0] * 500
