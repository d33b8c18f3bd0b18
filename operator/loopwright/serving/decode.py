"""Turn request bodies into a validated batch of feature columns.

Every check that can blame the client happens here, before the model runs, so
a bad request is a 400/422 naming the problem and never reaches scikit-learn,
whose errors would otherwise surface as a 500. 400 is for a body that is not
a well-formed request at all (JSON, tensor shapes, datatypes); 422 is for a
well-formed request that breaks the dataset schema (a missing feature, a value
of the wrong type or outside the column's domain).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright.api.schema import ColumnType, DatasetSchema

FloatArray = npt.NDArray[np.float64]

NUMERIC_DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
)
_INTEGER_DATATYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
DATATYPES = NUMERIC_DATATYPES | {"BYTES"}


class RequestError(Exception):
    """The client's mistake: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Column:
    """One feature of the schema, flattened for the hot path."""

    name: str
    numeric: bool
    nullable: bool
    allowed: frozenset[str] | None


@dataclass(slots=True)
class Batch:
    """Validated rows, column-wise (not frozen: a frozen dataclass costs twice as much to build,
    and one is built per request).

    ``numeric`` holds the numeric columns in schema order (NaN = missing), so an
    all-numeric model takes it as its input matrix without a copy;
    ``categorical`` holds each categorical column (None = missing).
    """

    rows: int
    numeric: FloatArray
    categorical: dict[str, list[str | None]]
    missing_numeric: bool = False  # any NaN in ``numeric``: spares later readers a scan


class Decoder:
    """Validates requests against one dataset schema."""

    def __init__(self, *, schema: DatasetSchema) -> None:
        self.columns = tuple(
            Column(
                name=c.name,
                numeric=c.type == ColumnType.NUMERIC,
                nullable=c.nullable,
                allowed=frozenset(c.allowed_values) if c.allowed_values is not None else None,
            )
            for c in schema.columns
        )
        self.names = tuple(c.name for c in self.columns)
        self.by_name = {c.name: c for c in self.columns}
        self.strict = schema.strict
        numeric = [c for c in schema.columns if c.type == ColumnType.NUMERIC]
        self.numeric_names = tuple(c.name for c in numeric)
        self.all_numeric = len(numeric) == len(self.columns)
        self._numeric_index = {c.name: i for i, c in enumerate(numeric)}
        self._mins = np.array([-np.inf if c.min is None else c.min for c in numeric], dtype=np.float64)
        self._maxs = np.array([np.inf if c.max is None else c.max for c in numeric], dtype=np.float64)
        self._nullable = np.array([c.nullable for c in numeric], dtype=bool)
        self._any_bounds = bool(np.isfinite(self._mins).any() or np.isfinite(self._maxs).any())

    # -- Open Inference Protocol v2 -------------------------------------------------------------

    def decode_v2(self, body: Any) -> Batch:
        """A v2 ``inputs`` list: one tensor per feature, or one [N, F] tensor in schema order."""
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise RequestError(400, "'inputs' must be a non-empty list of tensors")
        tensors = [_tensor(t, i) for i, t in enumerate(inputs)]
        if len(tensors) == 1 and tensors[0].name not in self.by_name:
            return self._decode_matrix(tensors[0])
        return self._decode_named(tensors)

    def _decode_matrix(self, tensor: _Tensor) -> Batch:
        width = len(self.columns)
        if len(tensor.shape) != 2 or tensor.shape[1] != width:
            raise RequestError(
                400,
                f"input {tensor.name!r}: expected one tensor per feature {list(self.names)} "
                f"or a single tensor of shape [N, {width}]; got shape {tensor.shape}",
            )
        rows = tensor.shape[0]
        if self.all_numeric and tensor.datatype != "BYTES":
            matrix = _numeric(tensor.data, datatype=tensor.datatype, kind="input", name=tensor.name)
            if matrix.size != rows * width:
                raise _shape_mismatch(tensor, matrix.size)
            return self._finish(rows, matrix.reshape(rows, width), {})
        flat = _flatten(tensor.data)
        if len(flat) != rows * width:
            raise _shape_mismatch(tensor, len(flat))
        return self._from_columns(
            rows,
            {c.name: (flat[j::width], tensor.datatype) for j, c in enumerate(self.columns)},
        )

    def _decode_named(self, tensors: list[_Tensor]) -> Batch:
        given: dict[str, tuple[Sequence[Any], str]] = {}
        rows: int | None = None
        for tensor in tensors:
            if tensor.name in given:
                raise RequestError(400, f"input {tensor.name!r} appears twice")
            if tensor.name not in self.by_name:
                if self.strict:
                    raise RequestError(422, f"unknown input {tensor.name!r}; features are {list(self.names)}")
                continue
            shape = tensor.shape
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise RequestError(400, f"input {tensor.name!r}: shape must be [N] or [N, 1], got {shape}")
            if rows is None:
                rows = shape[0]
            elif shape[0] != rows:
                raise RequestError(400, f"input {tensor.name!r} has {shape[0]} rows, others have {rows}")
            data = _flatten(tensor.data)
            if len(data) != shape[0]:
                raise _shape_mismatch(tensor, len(data))
            given[tensor.name] = (data, tensor.datatype)
        missing = [n for n in self.names if n not in given]
        if missing:
            raise RequestError(422, f"missing feature(s) {missing}")
        assert rows is not None
        return self._from_columns(rows, given)

    # -- plain JSON v1 --------------------------------------------------------------------------

    def decode_v1(self, body: Any) -> Batch:
        """``{"instances": [{feature: value, ...}, ...]}`` (or rows as lists in schema order)."""
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise RequestError(400, "'instances' must be a non-empty list")
        width = len(self.columns)
        columns: dict[str, tuple[Sequence[Any], str | None]] = {}
        if all(isinstance(i, list) for i in instances):
            bad = next((r for r, i in enumerate(instances) if len(i) != width), None)
            if bad is not None:
                raise RequestError(422, f"instance {bad} has {len(instances[bad])} values, expected {width}")
            for j, c in enumerate(self.columns):
                columns[c.name] = ([i[j] for i in instances], None)
            return self._from_columns(len(instances), columns)
        known = self.by_name.keys()
        for r, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise RequestError(400, f"instance {r} must be an object of feature values")
            if self.strict:
                unknown = inst.keys() - known
                if unknown:
                    raise RequestError(422, f"instance {r}: unknown feature(s) {sorted(unknown)}")
        for c in self.columns:
            if not c.nullable:
                lacking = next((r for r, i in enumerate(instances) if c.name not in i), None)
                if lacking is not None:
                    raise RequestError(422, f"instance {lacking}: missing feature {c.name!r}")
            columns[c.name] = ([i.get(c.name) for i in instances], None)
        return self._from_columns(len(instances), columns)

    # -- shared ---------------------------------------------------------------------------------

    def _from_columns(self, rows: int, given: Mapping[str, tuple[Sequence[Any], str | None]]) -> Batch:
        if rows == 0:
            raise RequestError(400, "the request has no rows")
        matrix = np.empty((rows, len(self.numeric_names)), dtype=np.float64)
        categorical: dict[str, list[str | None]] = {}
        for c in self.columns:
            data, datatype = given[c.name]
            if c.numeric:
                if datatype == "BYTES":
                    raise RequestError(422, f"feature {c.name!r} is numeric; got datatype BYTES")
                column = _numeric(data, datatype=datatype, kind="feature", name=c.name)
                matrix[:, self._numeric_index[c.name]] = column.reshape(-1)
            else:
                values = data.tolist() if isinstance(data, np.ndarray) else data
                categorical[c.name] = _categorical(values, datatype=datatype, column=c)
        return self._finish(rows, matrix, categorical)

    def _finish(self, rows: int, matrix: FloatArray, categorical: dict[str, list[str | None]]) -> Batch:
        """Domain checks for the numeric block, vectorised over the whole batch."""
        if rows == 0:
            raise RequestError(400, "the request has no rows")
        has_missing = False
        # One reduction answers "all finite?" for the common case; only a NaN or inf sum needs a
        # closer look (a sum that overflows from finite values finds nothing there and passes).
        if matrix.size and not math.isfinite(matrix.sum()):
            infinite = np.isinf(matrix)
            if infinite.any():
                r, j = np.argwhere(infinite)[0]
                raise RequestError(422, f"feature {self.numeric_names[j]!r}: value in row {r} is not finite")
            missing = np.isnan(matrix)
            has_missing = bool(missing.any())
            bad = missing & ~self._nullable
            if bad.any():
                r, j = np.argwhere(bad)[0]
                raise RequestError(422, f"feature {self.numeric_names[j]!r}: missing value in row {r}")
        if matrix.size and self._any_bounds:
            with np.errstate(invalid="ignore"):
                low = matrix < self._mins
                high = matrix > self._maxs
            if low.any() or high.any():
                r, j = np.argwhere(low | high)[0]
                side, bound = ("below min", self._mins[j]) if low[r, j] else ("above max", self._maxs[j])
                name, value = self.numeric_names[j], matrix[r, j]
                raise RequestError(422, f"feature {name!r}: value {value!r} in row {r} is {side} {bound!r}")
        return Batch(rows=rows, numeric=matrix, categorical=categorical, missing_numeric=has_missing)


@dataclass(slots=True)
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: Any


def _tensor(raw: Any, index: int) -> _Tensor:
    if not isinstance(raw, dict):
        raise RequestError(400, f"inputs[{index}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str):
        raise RequestError(400, f"inputs[{index}]: 'name' must be a string")
    shape = raw.get("shape")
    if not isinstance(shape, list) or not shape:
        raise _bad_shape(name)
    for d in shape:
        if type(d) is not int or d < 0:  # a bool is an int, but not of type int
            raise _bad_shape(name)
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise RequestError(
            400, f"input {name!r}: unknown datatype {datatype!r}; expected one of {sorted(DATATYPES)}"
        )
    data = raw.get("data")
    if not isinstance(data, (list, np.ndarray)):
        raise RequestError(400, f"input {name!r}: 'data' must be a list")
    return _Tensor(name=name, shape=shape, datatype=datatype, data=data)


def _bad_shape(name: str) -> RequestError:
    return RequestError(400, f"input {name!r}: 'shape' must be a non-empty list of non-negative integers")


def _shape_mismatch(tensor: _Tensor, size: int) -> RequestError:
    return RequestError(
        400, f"input {tensor.name!r}: shape {tensor.shape} does not match {size} data elements"
    )


def _flatten(data: Any) -> Any:
    """Row-major flattening of nested JSON lists (v2 allows both flat and nested data)."""
    if isinstance(data, np.ndarray) or not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def _numeric(data: Sequence[Any], *, datatype: str | None, kind: str, name: str) -> FloatArray:
    """Numbers (or null) as float64 with NaN for null, in the data's own shape (flat if it held
    null); strings and booleans are a type error of ``kind`` ``name`` (the message is only built
    for an error: this runs on every request)."""
    try:
        arr = np.asarray(data)
    except ValueError as exc:
        raise RequestError(400, f"{kind} {name!r}: ragged data ({exc})") from None
    dtype_kind = arr.dtype.kind
    if dtype_kind == "O":
        for x in arr.flat:
            if x is not None and (isinstance(x, bool) or not isinstance(x, int | float)):
                raise RequestError(422, f"{kind} {name!r}: expected numbers, got {type(x).__name__} {x!r}")
        with np.errstate(over="ignore"):
            out = np.array([np.nan if x is None else float(x) for x in arr.flat], dtype=np.float64)
    elif dtype_kind in "iuf":
        out = arr.astype(np.float64, copy=False)
    elif dtype_kind == "b" and datatype == "BOOL":
        out = arr.astype(np.float64)
    else:
        sample = next(iter(arr.flat), None)
        raise RequestError(422, f"{kind} {name!r}: expected numbers, got {type(sample).__name__} {sample!r}")
    if datatype in _INTEGER_DATATYPES and dtype_kind == "f" and not np.array_equal(out, np.trunc(out)):
        raise RequestError(422, f"{kind} {name!r}: datatype {datatype} needs integers")
    return out


def _categorical(data: Sequence[Any], *, datatype: str | None, column: Column) -> list[str | None]:
    """Strings (integers and booleans are accepted and read as their text); floats are refused."""
    out: list[str | None] = []
    for r, x in enumerate(data):
        if isinstance(x, str):
            out.append(x)
        elif x is None:
            if not column.nullable:
                raise RequestError(422, f"feature {column.name!r}: missing value in row {r}")
            out.append(None)
        elif isinstance(x, int) and datatype != "BYTES" and not (isinstance(x, bool) and datatype != "BOOL"):
            out.append(str(x))  # as pandas .astype(str) wrote it for the trainer: "1", "True"
        else:
            raise RequestError(
                422, f"feature {column.name!r} is categorical; got {type(x).__name__} {x!r} in row {r}"
            )
    if column.allowed is not None:
        bad = next((v for v in out if v is not None and v not in column.allowed), None)
        if bad is not None:
            raise RequestError(
                422, f"feature {column.name!r}: {bad!r} is not an allowed value {sorted(column.allowed)}"
            )
    return out
