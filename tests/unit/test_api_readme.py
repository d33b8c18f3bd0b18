"""The README's YAML examples are real: every one validates against the models and the CRDs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from crd_admission import admission_errors
from loopwright.api.kinds import ALL_KINDS, kind_of

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    docs = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    return [doc for doc in docs if str(doc.get("apiVersion", "")).startswith("loopwright.dev/")]


EXAMPLES = _examples()


def test_readme_has_one_example_per_kind() -> None:
    assert sorted(doc["kind"] for doc in EXAMPLES) == sorted(k.kind for k in ALL_KINDS)


@pytest.mark.parametrize("doc", EXAMPLES, ids=lambda d: d["kind"])
def test_example_is_valid(doc: dict[str, Any]) -> None:
    kind = kind_of(doc)
    kind.spec.model_validate(doc["spec"])
    assert admission_errors(kind, doc) == []
