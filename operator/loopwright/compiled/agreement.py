"""Whether a compiled model answers exactly as the scikit-learn model it was compiled from.

Both are run on the same rows in the same batches: class labels must be identical, class
probabilities within :data:`TOLERANCE` (absolute), regression values within :data:`TOLERANCE`
relative to their size. The verification Job runs this on the hold-out rows before the compiled
form may serve; a predictor loading a skops model runs it on probe rows before using the
compiled form it built in process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright.compiled.program import Program
from loopwright.compiled.rows import frame

TOLERANCE = 1e-12
_BATCH_ROWS = 4096


@dataclass(frozen=True)
class Agreement:
    rows: int
    agreeing: int
    max_proba_difference: float | None  # classifiers only
    first_disagreement: str | None

    @property
    def passed(self) -> bool:
        return self.rows > 0 and self.agreeing == self.rows

    @property
    def fraction(self) -> float:
        return self.agreeing / self.rows if self.rows else 0.0

    def describe(self) -> str:
        proba = ("" if self.max_proba_difference is None
                 else f", largest probability difference {self.max_proba_difference:.3g}")
        verdict = "identical" if self.passed else f"DIFFERENT ({self.first_disagreement})"
        return f"{self.agreeing}/{self.rows} rows agree{proba}: {verdict}"


def estimator_input(
    estimator: Any,
    columns: Sequence[str],
    numeric_names: Sequence[str],
    numeric: npt.NDArray[np.float64],
    categorical: Mapping[str, Sequence[str | None]],
) -> Any:
    """What the estimator was fitted on: the numeric matrix, or a DataFrame of the schema."""
    if not hasattr(estimator, "feature_names_in_") and not categorical:
        return numeric
    return frame(columns, numeric_names, numeric, categorical)


def compare(
    program: Program,
    estimator: Any,
    *,
    columns: Sequence[str],
    numeric_names: Sequence[str],
    numeric: npt.NDArray[np.float64],
    categorical: Mapping[str, Sequence[str | None]],
) -> Agreement:
    """``program`` (bound to ``numeric_names``) against ``estimator`` on the given rows."""
    total = agreeing = 0
    worst: float | None = 0.0 if program.has_proba else None
    first: str | None = None
    for start in range(0, numeric.shape[0], _BATCH_ROWS):
        stop = start + _BATCH_ROWS
        x = numeric[start:stop]
        cats = {k: list(v[start:stop]) for k, v in categorical.items()}
        given = estimator_input(estimator, columns, numeric_names, x, cats)
        index, proba = program.evaluate(x, cats, proba=program.has_proba)
        expected = np.asarray(estimator.predict(given))
        if program.classification:
            ok = program.classes[index] == expected
            if proba is not None:
                difference = np.abs(proba - np.asarray(estimator.predict_proba(given), dtype=np.float64))
                ok &= difference.max(axis=1) <= TOLERANCE
                worst = max(worst or 0.0, float(difference.max()))
        else:
            expected = expected.astype(np.float64)
            ok = np.abs(index - expected) <= TOLERANCE * np.maximum(1.0, np.abs(expected))
        total += len(ok)
        agreeing += int(ok.sum())
        if first is None and not ok.all():
            r = int(np.flatnonzero(~ok)[0])
            got = program.classes[index[r]] if program.classification else index[r]
            first = f"row {start + r}: compiled {got!r}, scikit-learn {expected[r]!r}"
    return Agreement(rows=total, agreeing=agreeing, max_proba_difference=worst, first_disagreement=first)
