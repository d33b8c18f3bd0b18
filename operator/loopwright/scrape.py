"""Reading the predictors' /metrics straight from their pods.

The canary analysis and the DriftPolicy both need per-pod counters of a handful
of predictor pods, right now, without a Prometheus server in the cluster (kind
has none). So the operator lists the ready pods of a Deployment by label and
scrapes each pod IP itself. Counter arithmetic over time windows (baselines,
restarts) belongs to the callers; this module only turns text into numbers.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,?)')
_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
_MAX_BODY = 16 * 1024 * 1024


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


def pod_target(pod: Any, *, version_label: str) -> PodTarget | None:
    """A scrape target for a pod (a kubernetes client V1Pod) that is Ready and has an IP, else None."""
    status = pod.status
    if status is None or not status.pod_ip or pod.metadata.deletion_timestamp is not None:
        return None
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())
    if not ready:
        return None
    labels: Mapping[str, str] = pod.metadata.labels or {}
    return PodTarget(name=pod.metadata.name, uid=pod.metadata.uid, ip=status.pod_ip,
                     version=labels.get(version_label, ""))


async def _fetch_one(session: aiohttp.ClientSession, pod: PodTarget, *, port: int) -> PodMetrics:
    host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
    try:
        async with session.get(f"http://{host}:{port}/metrics") as response:
            if response.status != 200:
                return PodMetrics(pod=pod, error=f"HTTP {response.status}")
            body = await response.content.read(_MAX_BODY + 1)
            if len(body) > _MAX_BODY:
                return PodMetrics(pod=pod, error=f"metrics larger than {_MAX_BODY} bytes")
        return PodMetrics(pod=pod, samples=parse_prometheus(body.decode("utf-8", errors="replace")))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return PodMetrics(pod=pod, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
    except ValueError as exc:
        return PodMetrics(pod=pod, error=f"unparsable metrics: {exc}")


async def fetch_pod_metrics(
    *, pods: Sequence[PodTarget], port: int, timeout: float
) -> dict[str, PodMetrics]:
    """Scrape every pod concurrently; keyed by pod UID.

    An unreachable or misbehaving pod is reported in its entry's ``error``, never
    raised: one pod being replaced must not blind the analysis of the others.
    """
    if not pods:
        return {}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout, trust_env=False) as session:
        results = await asyncio.gather(*(_fetch_one(session, pod, port=port) for pod in pods))
    return {result.pod.uid: result for result in results}
