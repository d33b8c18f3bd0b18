"""Names of the loopwright.dev API that cost nothing to import: group, version, kinds, annotations.

The pydantic models take most of a second to import. The kubectl plugin
(:mod:`loopwright.cli`) starts on every command, so it reads the names from here,
and so do the models: each name is spelled once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta

GROUP = "loopwright.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_DURATION_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1),
                   "m": timedelta(minutes=1), "h": timedelta(hours=1)}

NAME_LIMIT = 63
"""Child names become label values (a Job's name is its pods' ``job-name``), so they must fit one."""


def child_name(base: str, suffix: str) -> str:
    """``<base>-<suffix>``, shortened deterministically to 63 characters.

    A long base keeps its head and gains a hash of the whole, so two long names that share
    a prefix still map to different children, and the same input always gives the same name.
    """
    name = f"{base}-{suffix}"
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    head = base[: NAME_LIMIT - len(suffix) - len(digest) - 2].rstrip("-")
    return f"{head}-{digest}-{suffix}"


TRAIN_REQUEST_ANNOTATION = "loopwright.dev/train-request"
"""Set (or change) this annotation on a TrainingPipeline to start one run on demand."""
TRAIN_TRIGGER_ANNOTATION = "loopwright.dev/train-trigger"
"""Optional companion of the request annotation: Manual (default), Drift or Performance."""


@dataclass(frozen=True, kw_only=True)
class KindName:
    """How the API server and kubectl name one kind."""

    kind: str
    plural: str
    short_names: tuple[str, ...]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """``<plural>.<group>``, the name kubectl shows (``deployment.loopwright.dev/x``)."""
        return f"{self.plural}.{GROUP}"


DATASET = KindName(kind="Dataset", plural="datasets", short_names=("mldataset", "mlds"))
TRAINING_PIPELINE = KindName(kind="TrainingPipeline", plural="trainingpipelines",
                             short_names=("mlpipeline", "mlp"))
MODEL_VERSION = KindName(kind="ModelVersion", plural="modelversions", short_names=("mlversion", "mv"))
DEPLOYMENT = KindName(kind="Deployment", plural="deployments", short_names=("mldeploy", "mld"))
DRIFT_POLICY = KindName(kind="DriftPolicy", plural="driftpolicies", short_names=("mldrift", "dp"))
ANALYSIS_TEMPLATE = KindName(kind="AnalysisTemplate", plural="analysistemplates",
                             short_names=("mlanalysistemplate", "mlat"))

LOOP: tuple[KindName, ...] = (DATASET, TRAINING_PIPELINE, MODEL_VERSION, DEPLOYMENT, DRIFT_POLICY)
"""The kinds of one model's loop (what `kubectl loopwright get` reads)."""
ALL: tuple[KindName, ...] = (*LOOP, ANALYSIS_TEMPLATE)


def parse_duration(text: str) -> timedelta:
    """Turn ``1h30m`` into a timedelta; raises ValueError for anything else."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m")
    return sum(
        (int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)),
        timedelta(),
    )
