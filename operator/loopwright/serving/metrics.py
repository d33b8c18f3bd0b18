"""Prometheus metrics of the predictor, kept as numpy counters and rendered on scrape.

The per-feature bin counts are what the DriftPolicy and the canary analysis
read, so every prediction counts. Doing that with one client-library ``inc()``
per value would cost more than the prediction itself. Instead a request only
queues a reference to its (already validated) batch; every ``_FLUSH_BATCHES``
requests, or on scrape, the queued rows are binned together with a few
vectorised operations and one ``bincount`` into a flat counter array, so a
one-row request pays an append and the binning is amortised over hundreds of
rows. A scrape always sees every request answered before it. The server is
single-threaded (one event loop), so no locks are needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from loopwright.core.profile import FeatureKind, FeatureProfile
from loopwright.serving.decode import Batch

_PREFIX = "loopwright_predictor_"
_FLUSH_BATCHES = 256
_FLUSH_ROWS = 8192
# Up to 10 s; dense below 25 ms where a healthy predictor lives, so p95 and p99 are resolvable.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """All counters of one predictor process."""

    def __init__(
        self,
        *,
        model: str,
        version: str,
        features: Sequence[tuple[str, FeatureProfile]],
        prediction: FeatureProfile | None,
        form: str | None = None,
    ) -> None:
        """``features`` are the reference profiles of the schema's features (numeric ones first);
        ``form`` says what answers (compiled, skops-compiled or skops), exported as an info metric."""
        self._base = f'model="{_escape(model)}",version="{_escape(version)}"'
        self.form = form
        self._codes: dict[int, int] = {}
        self._durations = [0] * (len(DURATION_BUCKETS) + 1)
        self._duration_sum = 0.0
        self.predictions = 0
        self.feedback = 0
        self.feedback_correct = 0
        self.abs_error_sum = 0.0
        self.squared_error_sum = 0.0

        # One flat counter array: per feature, its bins followed by one "missing" slot.
        numeric = [(n, f) for n, f in features if f.kind == FeatureKind.NUMERIC]
        categorical = [(n, f) for n, f in features if f.kind == FeatureKind.CATEGORICAL]
        self._feature_names = [n for n, _ in (*numeric, *categorical)]
        sizes = [f.n_bins for _, f in (*numeric, *categorical)]
        self._feature_sizes = sizes
        starts = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64) + 1)]).astype(np.int64)
        self._starts = starts
        self._counts = np.zeros(int(starts[-1]), dtype=np.int64)

        # Numeric features are binned all at once: searchsorted(edges, x, "right") is the number
        # of edges <= x, so one broadcast comparison against an inf-padded edge matrix bins the
        # whole [N, F] block (equal to profile.bin_numeric; the unit tests hold it to that).
        widest = max((len(f.edges or ()) for _, f in numeric), default=0)
        self._edges = np.full((len(numeric), max(widest, 1)), np.inf)
        for j, (_, f) in enumerate(numeric):
            self._edges[j, : len(f.edges or ())] = f.edges or ()
        self._num_offsets = starts[: len(numeric)]
        self._num_missing = self._num_offsets + np.asarray(sizes[: len(numeric)], dtype=np.int64)
        self._categorical = [(n, f, int(starts[len(numeric) + i])) for i, (n, f) in enumerate(categorical)]
        self._prediction_bins = np.zeros(prediction.n_bins if prediction is not None else 0, dtype=np.int64)
        self._pending: list[tuple[Batch, npt.NDArray[np.intp] | None]] = []
        self._pending_rows = 0

    def observe_request(self, *, code: int, seconds: float | None) -> None:
        """One request to a prediction endpoint; ``seconds`` is None if it never got to time."""
        self._codes[code] = self._codes.get(code, 0) + 1
        if seconds is not None:
            self._durations[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            self._duration_sum += seconds

    def observe_batch(self, batch: Batch, prediction_bins: npt.NDArray[np.intp] | None) -> None:
        """Count every row of a predicted batch in the reference bins (features and predictions)."""
        self.predictions += batch.rows
        self._pending.append((batch, prediction_bins))
        self._pending_rows += batch.rows
        if len(self._pending) >= _FLUSH_BATCHES or self._pending_rows >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        batches = [b for b, _ in pending]
        parts: list[npt.NDArray[np.intp]] = []
        x = batches[0].numeric if len(batches) == 1 else np.concatenate([b.numeric for b in batches])
        if x.shape[1]:
            flat = (self._edges[None, :, :] <= x[:, :, None]).sum(axis=2) + self._num_offsets
            if any(b.missing_numeric for b in batches):
                flat = np.where(np.isnan(x), self._num_missing, flat)
            parts.append(flat.ravel())
        for name, f, start in self._categorical:
            values = [v for b in batches for v in b.categorical[name]]
            parts.append(f.bin_index(values) + start)  # type: ignore[arg-type]  # None = missing
        if parts:
            idx = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self._counts += np.bincount(idx, minlength=self._counts.size)
        predicted = [bins for _, bins in pending if bins is not None]
        if predicted and self._prediction_bins.size:
            self._prediction_bins += np.bincount(
                np.concatenate(predicted), minlength=self._prediction_bins.size
            )

    def feature_counts(self, name: str) -> tuple[list[int], int]:
        """The bin counts and the missing count of one feature (for tests and debugging)."""
        self._flush()
        j = self._feature_names.index(name)
        start, size = int(self._starts[j]), self._feature_sizes[j]
        return self._counts[start : start + size].tolist(), int(self._counts[start + size])

    def render(self, *, capture_dropped: Mapping[str, int] | None = None) -> bytes:
        """The Prometheus text exposition (format 0.0.4); with the capture's lost rows by reason."""
        self._flush()
        b = self._base
        out: list[str] = []

        def family(name: str, kind: str, doc: str) -> str:
            full = _PREFIX + name
            out.append(f"# HELP {full} {doc}\n# TYPE {full} {kind}\n")
            return full

        m = family("requests_total", "counter", "Requests to the prediction endpoints by HTTP status code.")
        out.extend(f'{m}{{{b},code="{code}"}} {n}\n' for code, n in sorted(self._codes.items()))

        m = family("request_duration_seconds", "histogram", "Latency of the prediction endpoints.")
        cumulative = 0
        for bound, n in zip((*DURATION_BUCKETS, float("inf")), self._durations, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{m}_bucket{{{b},le="{le}"}} {cumulative}\n')
        out.append(f"{m}_sum{{{b}}} {self._duration_sum!r}\n{m}_count{{{b}}} {cumulative}\n")

        counts = self._counts.tolist()
        m = family(
            "feature_bin_total", "counter", "Feature values per reference bin (unseen categories last)."
        )
        for j, name in enumerate(self._feature_names):
            start, label = int(self._starts[j]), _escape(name)
            out.extend(
                f'{m}{{{b},feature="{label}",bin="{i}"}} {counts[start + i]}\n'
                for i in range(self._feature_sizes[j])
            )
        m = family("feature_missing_total", "counter", "Missing (null) feature values.")
        for j, name in enumerate(self._feature_names):
            missing = counts[int(self._starts[j]) + self._feature_sizes[j]]
            out.append(f'{m}{{{b},feature="{_escape(name)}"}} {missing}\n')

        m = family(
            "prediction_bin_total", "counter", "Predictions per reference bin of the training profile."
        )
        out.extend(f'{m}{{{b},bin="{i}"}} {n}\n' for i, n in enumerate(self._prediction_bins.tolist()))

        if self.form is not None:
            m = family("model_info", "gauge", "What answers: compiled (numpy only), skops-compiled "
                       "(its compiled form, proven at load) or skops (scikit-learn's predict).")
            out.append(f'{m}{{{b},form="{_escape(self.form)}"}} 1\n')

        for name, doc, value in (
            ("predictions_total", "Rows predicted.", self.predictions),
            ("feedback_total", "Labels matched to an earlier prediction.", self.feedback),
            ("feedback_correct_total", "Matched labels equal to the prediction (classification).",
             self.feedback_correct),
            ("feedback_abs_error_total", "Sum of |label - prediction| (regression).", self.abs_error_sum),
            ("feedback_squared_error_total", "Sum of (label - prediction)^2 (regression).",
             self.squared_error_sum),
        ):  # fmt: skip
            m = family(name, "counter", doc)
            out.append(f"{m}{{{b}}} {value!r}\n")
        if capture_dropped is not None:
            m = family("capture_dropped_rows_total", "counter",
                       "Captured rows and labels lost: the buffer was full, or their write to S3 failed.")
            out.extend(f'{m}{{{b},reason="{reason}"}} {n}\n' for reason, n in sorted(capture_dropped.items()))
        return "".join(out).encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
