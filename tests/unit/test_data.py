import hashlib
import io

import numpy as np
import pandas as pd
import pytest

from loopwright import storage
from loopwright.api.dataset import DatasetValidation
from loopwright.api.schema import DatasetSchema
from loopwright.jobs import data

SCHEMA = DatasetSchema.model_validate(
    {
        "label": {"name": "y", "task": "classification"},
        "columns": [
            {"name": "a", "type": "numeric", "min": 0, "max": 10},
            {"name": "c", "type": "categorical", "nullable": True, "allowedValues": ["x", "y"]},
        ],
    }
)


def _kinds(report):
    return sorted((a.kind, a.column) for a in report.anomalies)


def _check(csv: bytes, schema=SCHEMA, **rules):
    frame = data.parse(data.RawVersion(["mem"], [csv]), fmt="csv", schema=schema)
    return data.validate(frame, schema, DatasetValidation(**rules))


def test_clean_csv_is_valid_with_stats():
    report = _check(b"a,c,y\n1,x,0\n2,y,1\n3,,1\n", maxMissingFraction=0.5)
    assert report.valid, report.anomalies
    assert report.columns["a"].min == 1.0
    assert report.columns["a"].max == 3.0
    assert report.columns["c"].missing == 1
    assert report.columns["c"].distinct == 2


def test_every_anomaly_is_reported_at_once():
    csv = b"a,c,y,extra\n1,x,0,9\nfoo,,1,9\n11,z,1,9\n-1,y,,9\n"
    report = _check(csv, minRows=10)
    assert _kinds(report) == [
        ("OutOfRange", "a"),
        ("TooFewRows", None),
        ("TooManyMissing", "c"),
        ("TooManyMissing", "y"),
        ("UnknownCategory", "c"),
        ("UnknownColumn", "extra"),
        ("WrongType", "a"),
    ]
    by_kind = {a.kind: a for a in report.anomalies}
    assert by_kind["OutOfRange"].count == 2
    assert "'11'" in by_kind["OutOfRange"].message
    assert "'-1'" in by_kind["OutOfRange"].message
    assert "'foo'" in by_kind["WrongType"].message
    assert "'z'" in by_kind["UnknownCategory"].message
    assert report.columns["a"].invalid == 3


def test_invalid_values_tolerated_up_to_max_invalid_fraction():
    csv = b"a,c,y\n" + b"1,x,0\n2,y,1\n" * 10 + b"50,x,1\n"
    assert _kinds(_check(csv)) == [("OutOfRange", "a")]
    assert _check(csv, maxInvalidFraction=0.1).valid


def test_missing_and_unknown_columns_respect_strict():
    csv = b"a,y,other\n1,0,5\n2,1,6\n"
    assert _kinds(_check(csv)) == [("MissingColumn", "c"), ("UnknownColumn", "other")]
    lax = SCHEMA.model_copy(update={"strict": False})
    assert _kinds(_check(csv, schema=lax)) == [("MissingColumn", "c")]


def test_missing_label_column():
    assert ("MissingColumn", "y") in _kinds(_check(b"a,c\n1,x\n"))


def test_single_class_label():
    assert _kinds(_check(b"a,c,y\n1,x,0\n2,y,0\n")) == [("TooFewClasses", "y")]


def test_regression_label_must_be_numeric():
    schema = SCHEMA.model_copy(update={"label": SCHEMA.label.model_copy(update={"task": "regression"})})
    assert _kinds(_check(b"a,c,y\n1,x,0.5\n2,y,high\n", schema=schema)) == [("WrongType", "y")]


def test_unreadable_parquet_names_the_object():
    with pytest.raises(data.DataError) as err:
        data.parse(data.RawVersion(["s3://b/k.parquet"], [b"not parquet"]), fmt="parquet", schema=SCHEMA)
    assert err.value.anomaly.kind == "Unreadable"
    assert "s3://b/k.parquet" in err.value.anomaly.message


def test_empty_csv_is_unreadable():
    with pytest.raises(data.DataError):
        data.parse(data.RawVersion(["x"], [b""]), fmt="csv", schema=SCHEMA)


def test_prefix_is_read_in_key_order_with_digest_over_bytes(tmp_path):
    parts = {"part-1.csv": b"a,c,y\n2,y,1\n", "part-0.csv": b"a,c,y\n1,x,0\n"}
    for name, body in parts.items():
        (tmp_path / name).write_bytes(body)
    raw = data.fetch(str(tmp_path))
    assert data.normalise(data.parse(raw, fmt="csv", schema=SCHEMA), SCHEMA)["a"].tolist() == [1.0, 2.0]
    expected = hashlib.sha256(parts["part-0.csv"] + parts["part-1.csv"]).hexdigest()
    assert raw.digest == f"sha256:{expected}"
    assert raw.size == sum(len(b) for b in parts.values())
    assert raw.sources == [str(tmp_path / "part-0.csv"), str(tmp_path / "part-1.csv")]
    table = data.read_table(str(tmp_path), fmt="csv", schema=SCHEMA)
    assert (table.digest, table.size, len(table.frame)) == (raw.digest, raw.size, 2)


def test_digest_is_hashed_once(monkeypatch):
    calls = []
    monkeypatch.setattr(data, "digest_of", lambda parts: calls.append(parts) or "sha256:x")
    raw = data.RawVersion(["m"], [b"a,c,y\n"])
    assert (raw.digest, raw.digest) == ("sha256:x", "sha256:x")
    assert len(calls) == 1


def test_parquet_normalises_types(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "c": pd.Series([1, None, 2], dtype="Int64"), "y": [0, 1, 1]})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    storage.put_bytes(str(tmp_path / "d.parquet"), buf.getvalue())
    raw = data.fetch(str(tmp_path / "d.parquet"))
    table = data.normalise(data.parse(raw, fmt="parquet", schema=SCHEMA), SCHEMA)
    assert table["a"].dtype == np.float64
    assert table["c"].dtype == data.TEXT
    assert table["c"].tolist()[0] == "1"
    assert pd.isna(table["c"].tolist()[1])
    assert table["y"].tolist() == ["0", "1", "1"]


@pytest.mark.parametrize("csv", [b"a,c,y\n1,x,0\n2,,1\n", b"a,c,y\nnot-a-number,x,0\n2,,1\n"])
def test_csv_categoricals_and_label_are_python_backed_strings(csv):
    """Python-backed, not pandas 3's Arrow-backed default: scikit-learn's encoders are far faster on them."""
    frame = data.parse(data.RawVersion(["m"], [csv]), fmt="csv", schema=SCHEMA)
    assert frame["c"].dtype == data.TEXT
    assert frame["c"].dtype.storage == "python"
    table = data.normalise(frame, SCHEMA)
    assert (table["c"].dtype, table["y"].dtype) == (data.TEXT, data.TEXT)
    assert table["c"].tolist()[0] == "x"
    assert pd.isna(table["c"].tolist()[1])
    assert table["y"].tolist() == ["0", "1"]


def test_normalise_turns_any_values_into_strings():
    values = pd.Series([1, None, True], dtype=object)
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": values, "y": [0, 1, 1]})
    table = data.normalise(frame, SCHEMA)
    assert table["c"].dtype == data.TEXT
    assert [None if pd.isna(v) else v for v in table["c"]] == ["1", None, "True"]
    assert table["y"].tolist() == ["0", "1", "1"]


def test_profile_columns_of_normalised_frame():
    frame = data.normalise(
        data.parse(data.RawVersion(["m"], [b"a,c,y\n1,x,0\n2,,1\n3,y,1\n"]), fmt="csv", schema=SCHEMA), SCHEMA
    )
    features, label = data.profile_columns(frame, SCHEMA)
    assert features["c"].categories == ["x", "y"]
    assert features["c"].missing == 1
    assert sum(features["a"].counts) == 3
    assert label.categories == ["0", "1"]
    assert label.counts == [1, 2, 0]


def test_normalise_digest():
    assert data.normalise_digest("ABC") == "sha256:abc"
    assert data.normalise_digest("sha256:abc") == "sha256:abc"
