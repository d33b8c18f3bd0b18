"""What every part of a compiled model is checked with: its errors and the typed readers of its arrays.

A compiled model arrives from storage, so each array is checked for its dtype and shape before
an evaluator may index with it (a malformed model is a :class:`ProgramError`, never an IndexError
in the middle of a request).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class ProgramError(Exception):
    """The compiled model is malformed or does not fit the schema it is served with."""


class InputError(ValueError):
    """Input the model cannot take, which scikit-learn refuses too (a 422 when serving)."""


class MissingValueError(InputError):
    """A missing value reached a model that does not accept them."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ProgramError(message)


def names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProgramError("expected a list of strings")
    return tuple(value)


def float_array(arrays: Mapping[str, npt.NDArray[Any]], name: str) -> FloatArray:
    a = arrays[name]
    require(a.dtype == np.float64, f"array {name!r} must be float64")
    return a


def index_array(arrays: Mapping[str, npt.NDArray[Any]], name: str) -> npt.NDArray[np.intp]:
    a = arrays[name]
    require(a.dtype.kind == "i" and a.ndim == 1, f"array {name!r} must be a 1-D integer array")
    return a.astype(np.intp, copy=False)


def vector(arrays: Mapping[str, npt.NDArray[Any]], name: str, size: int) -> FloatArray:
    a = float_array(arrays, name)
    require(a.shape == (size,), f"array {name!r} must have {size} values")
    return a
