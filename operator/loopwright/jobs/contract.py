"""What the profiling and training Jobs share: exit codes, JSON outputs, the closing summary.

A Job tells the operator how it ended in two places: its exit code (which the
operator maps to a reason without reading any file) and a one-line JSON summary,
printed to stdout and written to the container's termination message. The
summary is capped at the 4096 bytes Kubernetes keeps.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from loopwright import storage, termination

CONTAINER = "main"
"""The name of a Job's one container, whose termination message the operator reads."""
EXIT_OK = 0
EXIT_FAILED = 1
"""Infrastructure or unexpected failure: worth retrying."""
EXIT_BAD_PARAMETERS = 2
"""The arguments (estimator, params, schema) are unusable: retrying cannot help."""
EXIT_BAD_DATA = 3
"""The data cannot be trained on (or is not the version asked for): retrying cannot help."""

_TERMINATION_LIMIT = 4096


def dumps(obj: Any) -> bytes:
    """Canonical JSON (sorted keys) so identical content gives an identical sha256."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def write_json(uri: str, obj: Any) -> str:
    """Write ``obj`` as JSON to ``uri``; returns its sha256."""
    return storage.put_bytes(uri, dumps(obj))


def finish(summary: dict[str, Any], *, code: int) -> int:
    """Print the summary, leave it as the termination message, and return ``code``."""
    line = _fit(summary)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    termination.write(line)
    return code


def _fit(summary: dict[str, Any]) -> str:
    """The summary as one JSON line within the termination-message limit.

    Lists (e.g. anomalies) are shortened first, then the message, so the
    fields the operator keys on (code, digest, URIs) always survive.
    """
    out = dict(summary)
    line = json.dumps(out, sort_keys=True, separators=(",", ":"), allow_nan=False)
    for key, value in summary.items():
        if len(line.encode()) <= _TERMINATION_LIMIT:
            break
        if isinstance(value, list) and value:
            keep = len(value)
            while keep and len(line.encode()) > _TERMINATION_LIMIT:
                keep //= 2
                out[key] = value[:keep]
                out[f"{key}Truncated"] = True
                line = json.dumps(out, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(line.encode()) > _TERMINATION_LIMIT and isinstance(out.get("message"), str):
        excess = len(line.encode()) - _TERMINATION_LIMIT
        out["message"] = out["message"][: max(0, len(out["message"]) - excess - 3)] + "..."
        line = json.dumps(out, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return line
