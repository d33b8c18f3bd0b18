"""The container of compiled models and hold-out rows: a JSON header and plain numeric arrays.

Layout (version 1, all integers little-endian)::

    offset 0   6 bytes  magic b"LWPACK"
    offset 6   uint16   container version (1)
    offset 8   uint32   H, the length of the header
    offset 12  H bytes  the header: one UTF-8 JSON object
    then zero padding to a multiple of 8, then the data region

The header's ``"arrays"`` maps each array name to ``{"dtype", "shape", "offset"}``: ``offset``
counts bytes from the start of the data region and is a multiple of 8, ``dtype`` is one of
:data:`DTYPES` (float64, float32, int64, int32, uint8), ``shape`` a list of non-negative
integers. Everything else in the header belongs to the content (see :mod:`.program` and
:mod:`.rows`). Strings live in the header, never in arrays, so no array needs an object dtype.

Reading is safe by construction: the caller's sha256 is checked before a single byte is parsed;
then only ``json.loads`` and ``numpy.frombuffer`` run, on bounds checked here, so a corrupt or
hostile file is a :class:`ContainerError`, never code execution (there is no pickle anywhere).
Arrays are read-only views into the bytes read: loading copies nothing.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright import storage

MAGIC = b"LWPACK"
VERSION = 1
DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "|u1"})
_PREAMBLE = struct.Struct("<6sHI")
_MAX_HEADER = 64 << 20


class ContainerError(Exception):
    """The bytes are not a valid container (or not the expected one)."""


def dumps(header: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """A container holding ``header`` (JSON-serialisable, without ``"arrays"``) and ``arrays``."""
    if "arrays" in header:
        raise ValueError("'arrays' is reserved for the container")
    table: dict[str, dict[str, Any]] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, value in arrays.items():
        array = np.ascontiguousarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in DTYPES:
            raise ValueError(f"array {name!r}: dtype {array.dtype} is not one of {sorted(DTYPES)}")
        raw = array.astype(dtype, copy=False).tobytes()
        table[name] = {"dtype": dtype.str, "shape": list(array.shape), "offset": offset}
        padding = -len(raw) % 8
        chunks.append(raw + b"\0" * padding)
        offset += len(raw) + padding
    text = json.dumps({**header, "arrays": table}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode()
    head = _PREAMBLE.pack(MAGIC, VERSION, len(text)) + text
    return head + b"\0" * (-len(head) % 8) + b"".join(chunks)


def loads(data: bytes, *, sha256: str) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """The header and the arrays of a container whose sha256 is ``sha256`` (checked first).

    Raises :class:`loopwright.storage.IntegrityError` for other bytes, :class:`ContainerError`
    for a malformed container.
    """
    actual = storage.sha256_hex(data)
    if actual != sha256.lower():
        raise storage.IntegrityError(f"sha256 is {actual}, expected {sha256}")
    if len(data) < _PREAMBLE.size:
        raise ContainerError("too short to be a Loopwright container")
    magic, version, size = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise ContainerError("not a Loopwright container (bad magic); no other format is ever read")
    if version != VERSION:
        raise ContainerError(f"container version {version} is not supported (this build reads {VERSION})")
    end = _PREAMBLE.size + size
    if size > _MAX_HEADER or end > len(data):
        raise ContainerError("the header runs past the end of the file")
    try:
        header = json.loads(data[_PREAMBLE.size:end].decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContainerError(f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), dict):
        raise ContainerError("the header must be an object with an 'arrays' table")
    start = end + (-end % 8)
    arrays = {name: _array(data, start, name, spec) for name, spec in header.pop("arrays").items()}
    return header, arrays


def _array(data: bytes, start: int, name: str, spec: Any) -> npt.NDArray[Any]:
    if not isinstance(spec, dict):
        raise ContainerError(f"array {name!r}: its entry must be an object")
    dtype, shape, offset = spec.get("dtype"), spec.get("shape"), spec.get("offset")
    if dtype not in DTYPES:
        raise ContainerError(f"array {name!r}: dtype {dtype!r} is not allowed")
    if not isinstance(shape, list) or not all(_count(d) for d in shape):
        raise ContainerError(f"array {name!r}: the shape must be a list of non-negative integers")
    if not isinstance(offset, int) or not _count(offset) or offset % 8:
        raise ContainerError(f"array {name!r}: the offset must be a non-negative multiple of 8")
    items = math.prod(shape)
    size = items * np.dtype(dtype).itemsize
    if start + offset + size > len(data):
        raise ContainerError(f"array {name!r} runs past the end of the file")
    if items == 0:
        return np.empty(shape, dtype=dtype)
    out: npt.NDArray[Any] = np.frombuffer(data, dtype=dtype, count=items, offset=start + offset)
    return out.reshape(shape)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
