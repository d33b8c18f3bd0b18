"""A bounded memory of recent predictions, so labels sent later can be scored.

Prediction ids are ``<boot>-<sequence>``: ``boot`` is random per process, so an
id issued by another replica or before a restart is recognised as unknown
instead of being matched to the wrong row. The store is a ring buffer indexed
by the sequence number: O(1) per row, no allocation per prediction, and the
oldest predictions are forgotten first.
"""

from __future__ import annotations

import secrets

import numpy as np
import numpy.typing as npt


class PredictionStore:
    """The last ``capacity`` predicted values, addressable by prediction id."""

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.boot = secrets.token_hex(4)
        self._prefix = f"{self.boot}-"
        self._capacity = capacity
        self._values = np.zeros(capacity, dtype=np.float64)
        self._labelled = np.zeros(capacity, dtype=bool)
        self._next = 0

    def add(self, values: npt.NDArray[np.float64]) -> tuple[int, list[str]]:
        """Remember a batch of predicted values; returns the first sequence number and the ids."""
        start, n = self._next, len(values)
        self._next += n
        prefix = self._prefix
        if n == 1:  # the common case, without the vector machinery
            slot = start % self._capacity
            self._values[slot] = values[0]
            self._labelled[slot] = False
            return start, [f"{prefix}{start}"]
        if n >= self._capacity:
            values, first = values[-self._capacity :], self._next - self._capacity
        else:
            first = start
        slots = np.arange(first, self._next) % self._capacity
        self._values[slots] = values
        self._labelled[slots] = False
        return start, [f"{prefix}{s}" for s in range(start, self._next)]

    def claim(self, prediction_id: object) -> float | None:
        """The predicted value for an id not labelled before, marking it labelled; else None."""
        if not isinstance(prediction_id, str) or not prediction_id.startswith(self._prefix):
            return None
        tail = prediction_id[len(self._prefix) :]
        if not tail.isdigit():
            return None
        seq = int(tail)
        if not self._next - self._capacity <= seq < self._next:
            return None
        slot = seq % self._capacity
        if self._labelled[slot]:
            return None
        self._labelled[slot] = True
        return float(self._values[slot])

    def is_duplicate(self, prediction_id: str) -> bool:
        """Whether an id is known but already labelled (to tell duplicates from unknown ids)."""
        tail = prediction_id[len(self._prefix) :] if prediction_id.startswith(self._prefix) else ""
        if not tail.isdigit():
            return False
        seq = int(tail)
        return self._next - self._capacity <= seq < self._next and bool(self._labelled[seq % self._capacity])
