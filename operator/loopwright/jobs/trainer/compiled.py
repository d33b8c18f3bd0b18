"""The trainer's compiled outputs: the model as plain arrays, and the hold-out rows to check it on.

``model.lwc`` is what the predictor serves without scikit-learn once the verification Job has
compared it with the skops model on ``holdout.lwr`` (the first :data:`HOLDOUT_ROWS` hold-out
rows, features only). A model the compiler does not cover gets neither, and the reason goes to
``result.json`` (``notCompiledReason``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loopwright.api.schema import ColumnType, DatasetSchema
from loopwright.compiled import compiler, rows

HOLDOUT_ROWS = 50_000


def compiled_form(model: Any) -> tuple[bytes | None, str | None]:
    """The compiled form of the model, or why there is none (the skops model then serves alone)."""
    try:
        return compiler.dumps(model), None
    except compiler.UnsupportedError as exc:
        return None, str(exc)
    except Exception as exc:  # never fail a run for its optional compiled form
        return None, f"compiling failed: {type(exc).__name__}: {exc}"


def holdout_rows(x_test: pd.DataFrame, schema: DatasetSchema) -> bytes:
    """The first hold-out rows as :mod:`loopwright.compiled.rows` (missing: NaN, None)."""
    x = x_test.iloc[:HOLDOUT_ROWS]
    numeric = [c.name for c in schema.columns if c.type == ColumnType.NUMERIC]
    categorical: dict[str, list[str | None]] = {}
    for c in schema.columns:
        if c.type == ColumnType.CATEGORICAL:
            values = x[c.name].to_numpy(dtype=object)
            categorical[c.name] = [v if isinstance(v, str) else None for v in values.tolist()]
    matrix = x[numeric].to_numpy(dtype=np.float64, na_value=np.nan).reshape(len(x), len(numeric))
    return rows.dumps(rows.Rows(tuple(schema.feature_names), tuple(numeric), matrix, categorical))
