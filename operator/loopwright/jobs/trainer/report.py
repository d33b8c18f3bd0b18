"""The run's training report data, from what the trainer has in hand (see loopwright.reports.training)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from loopwright.core.profile import Profile
from loopwright.jobs.trainer import scores
from loopwright.reports import training


def data(facts: dict[str, Any], *, gates_json: str | None, output_prefix: str, profile: Profile, y_test: Any,
         y_pred: Any, classes: list[str]) -> dict[str, Any]:
    """Metrics, confusion matrix (classifiers) or residuals (regressors), features, gates."""
    given = json.loads(gates_json) if gates_json else None  # checked before the fit
    return training.build(
        result=facts, run=output_prefix.rstrip("/").rsplit("/", 1)[-1], profile=profile,
        time=datetime.now(UTC), given_gates=given,
        confusion=scores.confusion_matrix(y_test, y_pred, classes) if classes else None,
        residual=None if classes else training.residuals(y_test, y_pred))
