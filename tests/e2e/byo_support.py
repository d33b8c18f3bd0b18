"""The sample team image (manifests/samples/byo) built FROM this checkout's ml image and loaded into kind.

The recipe is the sample's own Dockerfile, built with ``--build-arg LOOPWRIGHT_ML_IMAGE`` set to
the ml image ``make kind-load`` built from this checkout (.cluster/images.env), so the team image
runs this checkout's trainer, trial runner, verifier and predictor. Its tag is a digest of the
sample's files and that base, so an unchanged sample is neither rebuilt nor reloaded. The build
and the load hold /tmp/loopwright-images.lock, as every image build on a shared engine does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from conftest import CACHE, REPO

SAMPLE = REPO / "manifests" / "samples" / "byo"
FACTORY = "churn_features.model:make"
TRUSTED = "churn_features.model.ChurnRatios"
LOCK = Path("/tmp/loopwright-images.lock")
SCHEMA = {
    "label": {"name": "churned", "task": "classification"},
    "columns": [
        {"name": "tenure_months", "type": "numeric", "min": 0, "max": 240},
        {"name": "monthly_charges", "type": "numeric", "min": 0},
        {"name": "support_calls", "type": "numeric", "min": 0, "max": 50},
        {"name": "plan", "type": "categorical", "allowedValues": ["basic", "standard", "premium"]},
    ],
}


def _base_image() -> str:
    env = REPO / ".cluster" / "images.env"
    for line in env.read_text().splitlines():
        if line.startswith("ML_IMAGE="):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError(f"no ML_IMAGE in {env}: make kind-load first")


def _kind() -> str:
    found = shutil.which("kind") or str(CACHE / "bin" / "kind")
    if not Path(found).exists():
        raise RuntimeError("no kind binary (make kind-up links it into ~/.cache/loopwright/bin)")
    return found


def team_image() -> str:
    """Build (if need be) and load the sample's image into the cluster; returns its name."""
    base = _base_image()
    digest = hashlib.sha256(base.encode())
    for path in sorted(p for p in SAMPLE.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(SAMPLE)).encode() + b"\0" + path.read_bytes())
    image = f"loopwright-e2e/churn-features:{digest.hexdigest()[:12]}"
    cluster = os.environ.get("KIND_CLUSTER", "loopwright")
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            present = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
            if present.returncode != 0:
                subprocess.run(["docker", "build", "--quiet", "--network", "none", "--build-arg",
                                f"LOOPWRIGHT_ML_IMAGE={base}", "-t", image, str(SAMPLE)],
                               check=True, capture_output=True, timeout=600)
            subprocess.run([_kind(), "load", "docker-image", "--name", cluster, image],
                           check=True, capture_output=True, timeout=600)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return image


def pipeline(name: str, dataset: str, *, image: str, **spec: Any) -> dict[str, Any]:
    """A TrainingPipeline of the sample's factory in ``image``."""
    body: dict[str, Any] = {
        "datasetRef": {"name": dataset},
        "model": {"name": name, "factory": FACTORY, "image": image, "trustedTypes": [TRUSTED],
                  "params": {"clf__max_iter": 300}},
        "split": {"testFraction": 0.25, "seed": 7},
        "metrics": ["accuracy"],
        "validation": {"thresholds": [{"metric": "accuracy", "min": 0.7}]},
        "triggers": {"cooldown": "1s"},
        "job": {"activeDeadlineSeconds": 600},
        **spec,
    }
    return {"apiVersion": "loopwright.dev/v1alpha1", "kind": "TrainingPipeline", "metadata": {"name": name},
            "spec": body}
