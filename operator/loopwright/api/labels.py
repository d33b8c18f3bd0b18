"""Labels and annotations Loopwright puts on objects, defined once.

Every child carries ``app.kubernetes.io/managed-by: loopwright`` and ``loopwright.dev/<kind>:
<name>`` of its parent (:func:`child_labels`); predictor pods and registry entries carry the model,
version and run they belong to. Controllers select children by these, tests and the CLI read them.
"""

from __future__ import annotations

from typing import Protocol

from loopwright.api.names import DEPLOYMENT, GROUP, MODEL_VERSION, TRAINING_PIPELINE

MANAGED_BY = {"app.kubernetes.io/managed-by": "loopwright"}


class _Named(Protocol):
    @property
    def kind(self) -> str: ...


def parent_label(kind: _Named) -> str:
    """``loopwright.dev/<kind>``: the label naming a child's parent of that kind."""
    return f"{GROUP}/{kind.kind.lower()}"


def child_labels(kind: _Named, name: str) -> dict[str, str]:
    """Labels every child object carries: who manages it and which parent it belongs to."""
    return {**MANAGED_BY, parent_label(kind): name}


DEPLOYMENT_LABEL = parent_label(DEPLOYMENT)
"""On predictor workloads, Services and pods: the loopwright.dev Deployment serving them."""
PIPELINE_LABEL = parent_label(TRAINING_PIPELINE)
MODEL_VERSION_LABEL = parent_label(MODEL_VERSION)
MODEL_LABEL = f"{GROUP}/model"
"""The registry name of the model (ModelVersions, training Jobs, predictor pods)."""
VERSION_LABEL = f"{GROUP}/version"
"""The model version number a predictor pod serves."""
RUN_LABEL = f"{GROUP}/run"
"""The training run that registered a ModelVersion."""
