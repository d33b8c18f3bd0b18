"""Tensors as raw bytes: the v2 binary tensor data extension (HTTP) and gRPC's raw contents.

An element is its little-endian machine value (BOOL: one byte, 0 or 1); a BYTES element is its
length as a 4-byte little-endian unsigned integer followed by the bytes, which must be UTF-8
here (every BYTES input of this server is a categorical feature, a string). Over HTTP the body
is the JSON header (``Inference-Header-Content-Length`` bytes long) followed by each binary
input's bytes in input order, each announced by ``"parameters": {"binary_data_size": n}`` in
place of ``"data"``; outputs asked for with ``"binary_data": true`` (or the whole response with
``"binary_data_output": true``) come back the same way. gRPC carries the same encoding in
``raw_input_contents`` and ``raw_output_contents``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright.serving.decode import RequestError

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("u1"),
    "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}  # fmt: skip
_LENGTH = struct.Struct("<I")


def decode(raw: bytes | memoryview, *, datatype: str, shape: Sequence[int], name: str) -> Any:
    """The elements of one raw tensor: a 1-D numpy array, or a list of str for BYTES."""
    if any(d < 0 for d in shape):
        raise RequestError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_strings(raw, count=count, name=name)
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise RequestError(400, f"input {name!r}: unknown datatype {datatype!r}")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(400, f"input {name!r}: {len(raw)} bytes of data for shape {list(shape)} of "
                                f"{datatype} ({count * dtype.itemsize} expected)")
    values = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        if values.size and values.max() > 1:
            raise RequestError(400, f"input {name!r}: a BOOL element is one byte, 0 or 1")
        return values.astype(bool)
    return values


def _decode_strings(raw: bytes | memoryview, *, count: int, name: str) -> list[str]:
    view = memoryview(raw)
    out: list[str] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise RequestError(400, f"input {name!r}: a BYTES element's length is cut off")
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + size > len(view):
            raise RequestError(400, f"input {name!r}: a BYTES element runs past the data")
        try:
            out.append(str(view[offset:offset + size], "utf-8"))
        except UnicodeDecodeError:
            raise RequestError(422, f"input {name!r}: element {len(out)} is not UTF-8 text") from None
        offset += size
    if len(out) != count:
        raise RequestError(400, f"input {name!r}: {len(out)} BYTES elements for {count} in its shape")
    return out


def encode(values: npt.NDArray[Any] | Sequence[str], *, datatype: str) -> bytes:
    """One output tensor's raw bytes."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for v in values:
            data = str(v).encode()
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=DTYPES[datatype]).tobytes()


def attach(doc: dict[str, Any], binary: bytes) -> None:
    """Put each binary input's elements into its ``"data"``, consuming ``binary`` in input order."""
    view = memoryview(binary)
    offset = 0
    inputs = doc.get("inputs")
    for i, tensor in enumerate(inputs if isinstance(inputs, list) else ()):
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RequestError(400, f"inputs[{i}]: binary_data_size must be a non-negative integer")
        if "data" in tensor:
            raise RequestError(400, f"input {name!r}: both 'data' and binary_data_size")
        if offset + size > len(view):
            raise RequestError(400, f"input {name!r}: binary_data_size {size} runs past the body")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise RequestError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
        tensor["data"] = decode(view[offset:offset + size], datatype=str(datatype), shape=shape,
                                name=str(name))
        offset += size
    if offset != len(view):
        raise RequestError(400, f"{len(view) - offset} bytes after the binary inputs announced")
