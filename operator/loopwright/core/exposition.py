"""Prometheus text exposition as numbers: the predictors' /metrics, parsed without I/O.

The canary analysis and the DriftPolicy both read per-pod counters of a handful of predictor
pods. Fetching them is the operator's job (:mod:`loopwright.operator.probes.scrape`); this module
only turns text into samples, per-pod views and histogram quantiles, so the analysis and the
drift window stay pure. Counter arithmetic over time windows (baselines, restarts) belongs to
the callers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,?)')
_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of the text exposition: a series and its value (timestamps are dropped)."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, kw_only=True, slots=True)
class PodTarget:
    """A pod to scrape. ``version`` is the model version it serves (label loopwright.dev/version)."""

    name: str
    uid: str
    ip: str
    version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PodMetrics:
    """What one pod answered; ``error`` says why ``samples`` is empty when it did not."""

    pod: PodTarget
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def select(self, name: str, **labels: str) -> list[Sample]:
        """Samples of one series name whose labels include ``labels``."""
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def total(self, name: str, **labels: str) -> float:
        """Sum over the matching samples (0 when there are none: a counter not yet incremented)."""
        return math.fsum(s.value for s in self.select(name, **labels))


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value)


def _parse_labels(line: str, start: int) -> tuple[dict[str, str], int]:
    """Labels from just after ``{``; returns them and the index after ``}``."""
    labels: dict[str, str] = {}
    pos = start
    while True:
        while pos < len(line) and line[pos] == " ":
            pos += 1
        if pos < len(line) and line[pos] == "}":
            return labels, pos + 1
        match = _LABEL.match(line, pos)
        if match is None:
            raise ValueError(f"malformed labels at column {pos}")
        labels[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
        if not match.group(3):
            while pos < len(line) and line[pos] == " ":
                pos += 1
            if pos >= len(line) or line[pos] != "}":
                raise ValueError(f"expected '}}' at column {pos}")
            return labels, pos + 1


def parse_prometheus(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (format 0.0.4).

    Comments and blank lines are skipped; a malformed line raises ValueError naming
    its number, because a half-read scrape would silently skew counter deltas.
    """
    samples: list[Sample] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        try:
            brace = line.find("{")
            if brace < 0:
                name, _, rest = line.partition(" ")
                labels: dict[str, str] = {}
            else:
                name = line[:brace].strip()
                labels, end = _parse_labels(line, brace + 1)
                rest = line[end:]
            parts = rest.split()
            if not name or not parts or len(parts) > 2:
                raise ValueError("expected `name{labels} value [timestamp]`")
            samples.append(Sample(name, labels, float(parts[0])))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}: {raw[:200]!r}") from exc
    return samples


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram from cumulative ``(le, count)`` buckets, as Prometheus computes it.

    Linear interpolation inside the bucket holding the rank; a rank in the +Inf
    bucket answers the largest finite bound. None when there is nothing to rank
    (no observations, or no +Inf bucket): "no data" must stay distinguishable from 0.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    # Counts scraped at slightly different moments can be non-monotonic; Prometheus evens them out.
    counts: list[float] = []
    for _, count in ordered:
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(ordered) - 1:
        return ordered[-2][0]
    upper = ordered[index][0]
    if index == 0:
        if upper <= 0:
            return upper
        lower, below = 0.0, 0.0
    else:
        lower, below = ordered[index - 1][0], counts[index - 1]
    in_bucket = counts[index] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def histogram_buckets(samples: Iterable[Sample], name: str) -> list[tuple[float, float]]:
    """``(le, cumulative count)`` of histogram ``name`` summed over every other label."""
    sums: dict[float, float] = {}
    bucket = name + "_bucket"
    for s in samples:
        if s.name == bucket and "le" in s.labels:
            le = float(s.labels["le"])
            sums[le] = sums.get(le, 0.0) + s.value
    return sorted(sums.items())
