"""images/wheels.py: the lock is binary wheels pinned by hash; each image's requirements."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from wheels import PYPROJECT, pins, render, requirements

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "images" / "requirements.lock"


def _item(name: str, version: str, url: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "version": version},
            "download_info": {"url": url, "archive_info": {"hashes": {"sha256": "ab" * 32}}}}


def test_pins_are_sorted_canonical_and_skip_the_project() -> None:
    report = {"install": [_item("PyYAML", "6.0.4", "https://x/PyYAML-6.0.4-cp311-manylinux.whl"),
                          _item("loopwright", "0.1.0", "file:///src"),
                          _item("annotated_types", "0.8.0", "https://x/annotated_types-0.8.0-py3-none-any.whl")]}
    assert pins(report, skip={"loopwright"}) == [("annotated-types", "0.8.0", "ab" * 32),
                                                 ("pyyaml", "6.0.4", "ab" * 32)]


def test_a_source_distribution_is_refused() -> None:
    report = {"install": [_item("thing", "1.0", "https://x/thing-1.0.tar.gz")]}
    with pytest.raises(ValueError, match="source distribution"):
        pins(report, skip=set())


def test_render_is_pip_hash_syntax() -> None:
    text = render([("numpy", "2.4.6", "cd" * 32)], python="3.11.7")
    assert text.splitlines()[-1] == f"numpy==2.4.6 --hash=sha256:{'cd' * 32}"
    assert "3.11.7" in text


def test_image_requirements_come_from_pyproject() -> None:
    project = tomllib.loads(PYPROJECT.read_text())
    operator = requirements(project, ["operator"])
    ml = requirements(project, ["trainer", "predictor"])
    assert any(r.startswith("kopf") for r in operator)
    assert not any(r.startswith("scikit-learn") for r in operator), "the operator image has no scikit-learn"
    assert any(r.startswith("scikit-learn") for r in ml)
    assert any(r.startswith("uvicorn") for r in ml)
    assert not any(r.startswith("loopwright") for r in operator + ml)
    with pytest.raises(KeyError):
        requirements(project, ["nope"])


def test_the_committed_lock_covers_every_image_requirement() -> None:
    locked = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            match = re.fullmatch(r"([a-z0-9-]+)==(\S+) --hash=sha256:[0-9a-f]{64}", line)
            assert match, line
            locked[match[1]] = match[2]
    assert "pip" in locked, "the image build runs pip from its locked wheel"
    project = tomllib.loads(PYPROJECT.read_text())
    for requirement in requirements(project, ["operator", "trainer", "predictor"]):
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in locked, f"{requirement} is not in images/requirements.lock: make lock"
