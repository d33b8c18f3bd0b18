"""Feature rows in the container format: the hold-out rows a compiled model is verified on.

Header (content ``"loopwright-rows"``, format 1): ``rows``, ``columns`` (every feature in the
model's input order), ``numeric`` (names of the float64 matrix ``numeric``, NaN = missing) and
``categorical`` (name -> vocabulary); each categorical column is an int32 array of codes into
its vocabulary, -1 for a missing value. :func:`frame` turns rows into the pandas DataFrame a
scikit-learn model trained by the trainer takes (pandas is imported only there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright.compiled import container

CONTENT = "loopwright-rows"
FORMAT = 1


@dataclass(frozen=True)
class Rows:
    """Rows column-wise: numeric columns as one [rows, columns] matrix (even with no numeric column),
    categorical ones as lists (None = missing)."""

    columns: tuple[str, ...]
    numeric_names: tuple[str, ...]
    numeric: npt.NDArray[np.float64]
    categorical: dict[str, list[str | None]]

    @property
    def count(self) -> int:
        return int(self.numeric.shape[0])

    def head(self, n: int) -> Rows:
        return Rows(self.columns, self.numeric_names, self.numeric[:n],
                    {k: v[:n] for k, v in self.categorical.items()})


def dumps(rows: Rows) -> bytes:
    arrays: dict[str, npt.NDArray[Any]] = {"numeric": np.asarray(rows.numeric, dtype=np.float64)}
    vocabularies: dict[str, list[str]] = {}
    for i, (name, values) in enumerate(rows.categorical.items()):
        vocabulary = sorted({v for v in values if v is not None})
        index = {v: k for k, v in enumerate(vocabulary)}
        arrays[f"categorical.{i}"] = np.array([-1 if v is None else index[v] for v in values], dtype=np.int32)
        vocabularies[name] = vocabulary
    header = {"content": CONTENT, "format": FORMAT, "rows": rows.count, "columns": list(rows.columns),
              "numeric": list(rows.numeric_names), "categorical": vocabularies}
    return container.dumps(header, arrays)


def loads(data: bytes, *, sha256: str) -> Rows:
    header, arrays = container.loads(data, sha256=sha256)
    if header.get("content") != CONTENT or header.get("format") != FORMAT:
        raise container.ContainerError("not a rows file of format 1")
    try:
        count = int(header["rows"])
        numeric_names = tuple(str(n) for n in header["numeric"])
        numeric = arrays["numeric"]
        if numeric.dtype != np.float64 or numeric.shape != (count, len(numeric_names)):
            raise container.ContainerError("the numeric matrix does not match the header")
        categorical: dict[str, list[str | None]] = {}
        for i, (name, vocabulary) in enumerate(header["categorical"].items()):
            codes = arrays[f"categorical.{i}"]
            if codes.shape != (count,) or codes.dtype != np.int32 or (codes.size and (
                    codes.min() < -1 or codes.max() >= len(vocabulary))):
                raise container.ContainerError(f"the codes of column {name!r} do not match its vocabulary")
            lookup = [str(v) for v in vocabulary]
            categorical[str(name)] = [None if c < 0 else lookup[c] for c in codes.tolist()]
        columns = tuple(str(c) for c in header["columns"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise container.ContainerError(f"malformed rows file: {exc}") from None
    if sorted(columns) != sorted([*numeric_names, *categorical]):
        raise container.ContainerError("the column list does not match the numeric and categorical columns")
    return Rows(columns, numeric_names, numeric, categorical)


def frame(
    columns: Sequence[str],
    numeric_names: Sequence[str],
    numeric: npt.NDArray[np.float64],
    categorical: Mapping[str, Sequence[str | None]],
) -> Any:
    """The pandas DataFrame the trainer's models were fitted on: NaN (not None) for a missing
    category, since that is what pandas gave the trainer and what SimpleImputer recognises."""
    import pandas as pd  # noqa: PLC0415 - only the scikit-learn side needs it

    index = {n: j for j, n in enumerate(numeric_names)}
    data: dict[str, Any] = {}
    for name in columns:
        if name in index:
            data[name] = numeric[:, index[name]]
        else:
            values = np.array(categorical[name], dtype=object)
            values[values == None] = np.nan  # noqa: E711 - element-wise comparison
            data[name] = values
    return pd.DataFrame(data, columns=list(columns))
