"""The virtualenv a benchmark's comparison tool runs in (MLServer, Evidently), apart from ours."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def ensure(venv: Path, packages: Sequence[str]) -> str | None:
    """Create ``venv`` if needed and install ``packages``; the install error, or None when usable."""
    pip = venv / "bin" / "pip"
    steps = [[str(pip), "install", "-q", *packages]]
    if not pip.exists():
        print(f"creating {venv} with {' '.join(packages)}", flush=True)
        python = shutil.which("python3.11") or sys.executable
        steps.insert(0, [python, "-m", "venv", str(venv)])
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"`{' '.join(step)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return None
