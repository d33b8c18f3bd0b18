"""The verification Job's command: exit codes and summaries for good and bad artifacts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopwright import artifacts, storage
from loopwright.compiled import compiler, rows
from loopwright.jobs.verifier.__main__ import main


@pytest.fixture
def model_file(tmp_path: Path) -> tuple[Path, str]:
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1]))
    path = tmp_path / "model.skops"
    return path, artifacts.save(model, str(path))


@pytest.fixture
def summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("LOOPWRIGHT_TERMINATION_LOG", str(path))
    return path


def _read(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text()))


def test_a_good_artifact_is_verified(model_file: tuple[Path, str], summary: Path) -> None:
    path, sha = model_file
    assert main(["--uri", str(path), "--sha256", sha]) == 0
    assert _read(summary)["verified"] is True


@pytest.mark.parametrize(
    ("change", "error"),
    [("sha", "DigestMismatch"), ("missing", "NotFound"), ("size", "TooLarge"), ("pickle", "Unloadable")],
)
def test_a_bad_artifact_is_rejected_with_exit_3(
    model_file: tuple[Path, str], summary: Path, tmp_path: Path, change: str, error: str
) -> None:
    path, sha = model_file
    args = ["--uri", str(path), "--sha256", sha]
    if change == "sha":
        args[3] = "0" * 64
    elif change == "missing":
        args[1] = str(tmp_path / "absent.skops")
    elif change == "size":
        args += ["--max-bytes", "10"]
    else:
        pickled = tmp_path / "model.pkl"
        pickled.write_bytes(b"\x80\x04K\x01.")
        args = ["--uri", str(pickled), "--sha256", storage.sha256_hex(pickled.read_bytes())]
    assert main(args) == 3
    result = _read(summary)
    assert result["verified"] is False
    assert result["error"] == error


def _compiled_case(tmp_path: Path, *, other: bool = False) -> tuple[list[str], Path]:
    """A trainer-shaped model, its hold-out rows and a compiled model (of another fit when ``other``)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "c": rng.choice(["x", "y"], size=200).astype(object)})
    frame.loc[::9, "a"] = np.nan
    y = (frame["a"].fillna(0) + (frame["c"] == "x") > 0.5).astype(int)
    model = _trainer_shaped(LogisticRegression()).fit(frame, y)
    compiled_from = _trainer_shaped(LogisticRegression(C=0.01)).fit(frame, 1 - y) if other else model
    sha = artifacts.save(model, str(tmp_path / "model.skops"))
    (tmp_path / "model.lwc").write_bytes(compiler.dumps(compiled_from))
    held = rows.Rows(("a", "c"), ("a",), frame[["a"]].to_numpy(), {"c": list(frame["c"])})
    (tmp_path / "holdout.lwr").write_bytes(rows.dumps(held))
    args = ["--uri", str(tmp_path / "model.skops"), "--sha256", sha,
            "--compiled-uri", str(tmp_path / "model.lwc"),
            "--compiled-sha256", storage.sha256_hex((tmp_path / "model.lwc").read_bytes()),
            "--holdout-uri", str(tmp_path / "holdout.lwr"),
            "--holdout-sha256", storage.sha256_hex((tmp_path / "holdout.lwr").read_bytes())]
    return args, tmp_path / "model.lwc"


def _trainer_shaped(model: object) -> Pipeline:
    return Pipeline([("preprocess", ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")),
                              ("scale", StandardScaler())]), ["a"]),
        ("categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                  ("onehot", OneHotEncoder(handle_unknown="ignore"))]), ["c"]),
    ])), ("model", model)])


def test_the_compiled_model_is_checked_on_the_holdout_rows(tmp_path: Path, summary: Path) -> None:
    args, _ = _compiled_case(tmp_path)
    assert main(args) == 0
    compiled = _read(summary)["compiled"]
    assert compiled["passed"] is True
    assert compiled["rows"] == compiled["agreeing"] == 200
    assert compiled["maxProbaDifference"] <= 1e-12
    assert "200/200 rows agree" in compiled["message"]


def test_a_compiled_model_that_answers_differently_fails_its_check_only(
    tmp_path: Path, summary: Path
) -> None:
    args, _ = _compiled_case(tmp_path, other=True)
    assert main(args) == 0  # the skops artifact itself is fine
    result = _read(summary)
    assert result["verified"] is True
    assert result["compiled"]["passed"] is False
    assert result["compiled"]["agreeing"] < 200
    assert "DIFFERENT (row " in result["compiled"]["message"]


@pytest.mark.parametrize(("damage", "error"), [("sha", "DigestMismatch"), ("bytes", "Malformed"),
                                                ("missing", "NotFound")])
def test_a_corrupt_compiled_model_fails_its_check(
    tmp_path: Path, summary: Path, damage: str, error: str
) -> None:
    args, compiled = _compiled_case(tmp_path)
    if damage == "sha":
        compiled.write_bytes(compiled.read_bytes()[:-8] + b"\0" * 8)
    elif damage == "bytes":
        compiled.write_bytes(b"LWPACK" + b"\x07" * 40)
        args[args.index("--compiled-sha256") + 1] = storage.sha256_hex(compiled.read_bytes())
    else:
        compiled.unlink()
    assert main(args) == 0
    result = _read(summary)["compiled"]
    assert result["passed"] is False
    assert result["error"] == error


def test_compiled_arguments_go_together(tmp_path: Path, model_file: tuple[Path, str]) -> None:
    path, sha = model_file
    with pytest.raises(SystemExit):
        main(["--uri", str(path), "--sha256", sha, "--compiled-uri", str(tmp_path / "model.lwc")])
