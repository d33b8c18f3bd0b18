"""Sampled capture of requests, predictions and labels to S3, for later Dataset versions.

A sampled request (probability ``fraction``, decided per request so one
decision covers its whole batch) appends one JSON object per row to a bounded
buffer; a background task writes the buffer as a JSONL object every
``flush_seconds`` or once ``flush_rows`` rows wait, off the event loop. When the
buffer is full new rows are dropped and counted rather than let memory grow, and the rows of a
write that fails (S3 down) are counted too (``dropped``, by reason, exported on /metrics as
``loopwright_predictor_capture_dropped_rows_total``): capture is best effort, serving is not.
Objects, under ``{prefix}/{pod}/``:

* ``{unix_ms}.jsonl``: ``{"id", "ts", "features": {name: value}, "prediction"}``
  per row (``ts`` in unix milliseconds; missing values are null);
* ``{unix_ms}.labels.jsonl``: ``{"id", "ts", "label"}`` per label matched by the
  feedback endpoint, for any prediction (captured or not); join on ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from typing import Any

import orjson

from loopwright import storage
from loopwright.serving.decode import Batch

logger = logging.getLogger(__name__)


class Capture:
    """The capture buffers of one predictor process and their flusher."""

    def __init__(
        self,
        *,
        prefix: str,
        fraction: float,
        numeric_names: tuple[str, ...],
        max_rows: int = 20_000,
        flush_rows: int = 2_000,
        flush_seconds: float = 30.0,
    ) -> None:
        self.prefix = prefix
        self.fraction = fraction
        self.dropped = {"bufferFull": 0, "writeFailed": 0}
        self._numeric_names = numeric_names
        self._max_rows = max_rows
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._rows: list[bytes] = []
        self._labels: list[bytes] = []
        self._wake = asyncio.Event()

    def sampled(self) -> bool:
        return self.fraction > 0 and random.random() < self.fraction  # noqa: S311 - sampling, not security

    def add_predictions(self, batch: Batch, labels: list[Any], ids: list[str]) -> None:
        room = self._max_rows - len(self._rows)
        if room < batch.rows:
            self.dropped["bufferFull"] += batch.rows - max(room, 0)
        if room <= 0:
            return
        ts = int(time.time() * 1000)
        numeric = {name: batch.numeric[:, j].tolist() for j, name in enumerate(self._numeric_names)}
        columns = {**numeric, **batch.categorical}
        for r in range(min(room, batch.rows)):
            features = {name: _json_value(values[r]) for name, values in columns.items()}
            self._rows.append(
                orjson.dumps({"id": ids[r], "ts": ts, "features": features, "prediction": labels[r]})
            )
        if len(self._rows) >= self._flush_rows:
            self._wake.set()

    def add_labels(self, matched: list[tuple[str, Any]]) -> None:
        ts = int(time.time() * 1000)
        room = self._max_rows - len(self._labels)
        self.dropped["bufferFull"] += max(len(matched) - room, 0)
        self._labels.extend(orjson.dumps({"id": i, "ts": ts, "label": label}) for i, label in matched[:room])
        if len(self._labels) >= self._flush_rows:
            self._wake.set()

    async def run(self) -> None:
        """Flush periodically until cancelled; a final flush belongs to :meth:`flush` at shutdown."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_seconds)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        rows, self._rows = self._rows, []
        labels, self._labels = self._labels, []
        stamp = int(time.time() * 1000)
        for lines, suffix in ((rows, ".jsonl"), (labels, ".labels.jsonl")):
            if not lines:
                continue
            uri = storage.join_uri(self.prefix, f"{stamp}{suffix}")
            try:
                await asyncio.to_thread(storage.put_bytes, uri, b"\n".join(lines) + b"\n")
            except storage.StorageError:
                self.dropped["writeFailed"] += len(lines)
                logger.exception("capture: could not write %d lines to %s; they are lost", len(lines), uri)
            else:
                logger.info("capture: wrote %d lines to %s", len(lines), uri)


def _json_value(value: Any) -> Any:
    """NaN (a missing numeric value) as null; JSON has no NaN."""
    return None if isinstance(value, float) and math.isnan(value) else value
