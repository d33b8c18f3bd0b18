"""The traffic of a time window, summed over predictor pods from their cumulative counters.

Predictors export counters that only grow while a process lives. A check needs
what happened in the last ``window`` across all pods serving the reference
version, while pods come, go and restart. Each check therefore observes every
reachable pod and turns its counters into an *increment* since that pod's
previous reading (its baseline, keyed by pod UID):

* a counter below its baseline means the process restarted, and the whole new
  value is the increment (counting from zero, as Prometheus' ``increase`` does);
* a pod seen for the first time contributes its full counters only if it
  started after the window began (all its traffic belongs to this reference);
  an older pod is only baselined, because its counters hold traffic of unknown
  age, possibly against another reference;
* an unreachable pod keeps its baseline, so the next reading covers the gap;
* a vanished pod keeps what it contributed: increments are stored per check,
  not per pod, and age out of the window by time.

Increments closer together than ``span / BUCKETS`` share one bucket, so a window
holds at most about ``BUCKETS`` of them however short the interval: memory per
policy is bounded, and the window edge is exact to within 1/BUCKETS of its span.

The window is in memory: after an operator restart it starts again empty, which
costs one interval of data, never a wrong count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loopwright.core.exposition import Sample
from loopwright.core.profile import Profile

PREFIX = "loopwright_predictor_"
BUCKETS = 120

Key = tuple[str, ...]
"""A counter: ``("bin", feature, bin)``, ``("missing", feature)``, ``("prediction", bin)``, or one of
``PREDICTIONS``, ``FEEDBACK``, ``CORRECT``, ``ABS_ERROR``, ``SQUARED_ERROR``."""

PREDICTIONS: Key = ("predictions",)
FEEDBACK: Key = ("feedback",)
CORRECT: Key = ("feedback_correct",)
ABS_ERROR: Key = ("abs_error",)
SQUARED_ERROR: Key = ("squared_error",)

_SCALARS: dict[str, Key] = {
    PREFIX + "predictions_total": PREDICTIONS,
    PREFIX + "feedback_total": FEEDBACK,
    PREFIX + "feedback_correct_total": CORRECT,
    PREFIX + "feedback_abs_error_total": ABS_ERROR,
    PREFIX + "feedback_squared_error_total": SQUARED_ERROR,
}


def counters(samples: Iterable[Sample], *, version: str | None = None) -> dict[Key, float]:
    """The drift-relevant counters of one pod's scrape, keeping only samples of ``version``.

    Filtering on the ``version`` label as well as on pod labels means a pod that
    was relabelled, or a process serving something else, never pollutes the window.
    """
    out: dict[Key, float] = {}
    for s in samples:
        if version is not None and s.labels.get("version") != version:
            continue
        key: Key | None
        if s.name == PREFIX + "feature_bin_total":
            key = ("bin", s.labels.get("feature", ""), s.labels.get("bin", ""))
        elif s.name == PREFIX + "feature_missing_total":
            key = ("missing", s.labels.get("feature", ""))
        elif s.name == PREFIX + "prediction_bin_total":
            key = ("prediction", s.labels.get("bin", ""))
        else:
            key = _SCALARS.get(s.name)
        if key is not None:
            out[key] = out.get(key, 0.0) + s.value
    return out


@dataclass(frozen=True, kw_only=True)
class PodReading:
    """The counters read from one pod at one check."""

    uid: str
    counters: Mapping[Key, float]
    started: datetime | None = None
    """When the pod started (status.startTime); None if unknown, which counts as old."""


@dataclass(frozen=True, kw_only=True)
class Counts:
    """Window totals, looked up the way a check needs them."""

    values: Mapping[Key, float] = field(default_factory=dict)

    def get(self, key: Key) -> float:
        return self.values.get(key, 0.0)

    @property
    def predictions(self) -> int:
        return round(self.get(PREDICTIONS))

    @property
    def feedback(self) -> int:
        return round(self.get(FEEDBACK))

    def features(self, profile: Profile) -> dict[str, list[int]]:
        """Each profile feature's counts in its reference bins; features never exported are left out."""
        out: dict[str, list[int]] = {}
        for name, feature in profile.features.items():
            keys = [("bin", name, str(i)) for i in range(feature.n_bins)]
            if any(k in self.values for k in keys):
                out[name] = [round(self.get(k)) for k in keys]
        return out

    def prediction(self, profile: Profile) -> list[int] | None:
        """The predictions' counts in the profile's prediction bins, or None if not exported."""
        if profile.prediction is None:
            return None
        keys = [("prediction", str(i)) for i in range(profile.prediction.n_bins)]
        if not any(k in self.values for k in keys):
            return None
        return [round(self.get(k)) for k in keys]


class Window:
    """Increments of the pods serving one reference, over a sliding time span."""

    def __init__(self, *, reference: str, span: timedelta, start: datetime) -> None:
        self.reference = reference
        """ModelVersion whose profile the counts are compared with; a new one needs a new window."""
        self.span = span
        self.start = start
        self._baselines: dict[str, tuple[datetime, Mapping[Key, float]]] = {}
        self._increments: deque[tuple[datetime, dict[Key, float]]] = deque()
        self._bucket = span / BUCKETS

    def observe(self, readings: Iterable[PodReading], *, now: datetime) -> None:
        """Fold one check's readings into the window (see the module docstring for the rules)."""
        total: dict[Key, float] = {}
        for reading in readings:
            previous = self._baselines.get(reading.uid)
            if previous is not None:
                delta = _increase(previous[1], reading.counters)
            elif reading.started is not None and reading.started >= self.start:
                delta = dict(reading.counters)
            else:
                delta = {}
            self._baselines[reading.uid] = (now, dict(reading.counters))
            for key, value in delta.items():
                if value:
                    total[key] = total.get(key, 0.0) + value
        if self._increments and now - self._increments[-1][0] < self._bucket:
            last = self._increments[-1][1]
            for key, value in total.items():
                last[key] = last.get(key, 0.0) + value
        else:
            self._increments.append((now, total))
        self._forget(now)

    def counts(self, *, now: datetime) -> Counts:
        """Totals of the increments observed within ``span`` before ``now``."""
        self._forget(now)
        out: dict[Key, float] = {}
        for _, increment in self._increments:
            for key, value in increment.items():
                out[key] = out.get(key, 0.0) + value
        return Counts(values=out)

    @property
    def buckets(self) -> int:
        """Stored increments (at most about BUCKETS + 1)."""
        return len(self._increments)

    @property
    def pods(self) -> int:
        """Pods with a baseline (seen within the span)."""
        return len(self._baselines)

    def _forget(self, now: datetime) -> None:
        horizon = now - self.span
        while self._increments and self._increments[0][0] <= horizon:
            self._increments.popleft()
        # A baseline is kept while its pod may come back; one not refreshed within the span is stale.
        for uid in [u for u, (seen, _) in self._baselines.items() if seen <= horizon]:
            del self._baselines[uid]


def _increase(before: Mapping[Key, float], after: Mapping[Key, float]) -> dict[Key, float]:
    """Counter increase from ``before`` to ``after``; any counter going down means a restart."""
    if any(after.get(key, 0.0) < value for key, value in before.items()):
        return dict(after)
    return {key: value - before.get(key, 0.0) for key, value in after.items()}
