"""Fixtures of the fault suite (`make faults`): the e2e fixtures (tests/conftest.py) plus `figures`.

Every case measures something (failed requests, seconds to converge, memory) and records it with
`figures.record(figure, value)`: a row appended to reports/faults.md with the case, the figure, its
value and the command that reproduces it. The file accumulates over runs; each session starts a new
table headed by the time and the checkout's commit.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "reports" / "faults.md"


@dataclass(frozen=True)
class Figures:
    """Appends one row per figure of one case to reports/faults.md."""

    case: str
    command: str

    def record(self, figure: str, value: object) -> None:
        cells = [self.case, figure, str(value), f"`{self.command}`"]
        with REPORT.open("a") as out:
            out.write("| " + " | ".join(c.replace("|", "/") for c in cells) + " |\n")
        print(f"FIGURE {self.case}: {figure} = {value}")


@pytest.fixture(scope="session")
def _report() -> None:
    REPORT.parent.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip() or "unknown"
    fresh = not REPORT.exists()
    with REPORT.open("a") as out:
        if fresh:
            out.write("# Fault suite figures (`make faults`; tests/faults)\n")
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        out.write(f"\n## {stamp}, commit {commit}\n\n")
        out.write("| case | figure | value | command |\n|---|---|---|---|\n")


@pytest.fixture
def figures(request: pytest.FixtureRequest, _report: None) -> Figures:
    """The recorder of this case's figures."""
    nodeid = request.node.nodeid
    return Figures(case=request.node.name.removeprefix("test_"),
                  command=f'make faults FAULTS_ARGS="{nodeid}"')
