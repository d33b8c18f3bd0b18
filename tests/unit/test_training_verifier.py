"""The verification Job's command: exit codes and summaries for good and bad artifacts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loopwright import artifacts, storage
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
