"""The data plane: what the predictor does, whatever transport a request came by.

HTTP (:mod:`.app`: JSON, the binary tensor extension, the plain v1 API) and gRPC
(:mod:`.grpc_server`) parse their wire format into the same v2-shaped request (a dict whose
input ``"data"`` is a JSON list or already-decoded elements), call :meth:`DataPlane.infer`, and
encode the :class:`InferResult` their own way. Validation, prediction, prediction ids, metrics
and capture therefore happen once, here, and a client's mistake is the same
:class:`~loopwright.serving.decode.RequestError` (a 4xx, gRPC INVALID_ARGUMENT) on every
transport. The model is loaded here too, in a thread at start-up; readiness and the drain are
the data plane's state, which both transports report.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

import numpy.typing as npt
import orjson

from loopwright import storage
from loopwright.serving.capture import Capture
from loopwright.serving.decode import Batch, RequestError
from loopwright.serving.feedback import PredictionStore
from loopwright.serving.metrics import Metrics
from loopwright.serving.model import ModelLoadError, Prediction, ServedModel
from loopwright.serving.settings import Settings

logger = logging.getLogger(__name__)

OUTPUTS = ("predict", "prediction_id", "predict_proba")
EXTENSIONS = ("binary_tensor_data",)
SERVER_NAME = "loopwright-predictor"


class UnavailableError(Exception):
    """No model loaded (yet): 503 / UNAVAILABLE, the one server-side answer that is not a bug."""


class Output(TypedDict):
    """One output tensor as the v2 JSON names its fields (so the JSON answer is just this dict):
    numeric elements as an array, BYTES elements as a list of str."""

    name: str
    shape: list[int]
    datatype: str
    data: npt.NDArray[Any] | list[str]


class InferResult(NamedTuple):
    id: str
    outputs: list[Output]


@dataclass(frozen=True)
class _Served:
    """What exists once the model is loaded; swapped in as a whole so requests see all or nothing."""

    model: ServedModel
    metrics: Metrics
    store: PredictionStore
    capture: Capture | None
    metadata: dict[str, Any]  # the v2 model metadata


class DataPlane:
    """The loaded model and everything a prediction touches. ``loader`` runs in a thread at start-up."""

    def __init__(self, *, settings: Settings, loader: Callable[[], ServedModel] | None = None) -> None:
        self.settings = settings
        self.draining = False
        self.load_error: str | None = None
        self.on_fatal: Callable[[], None] = lambda: None
        self.served: _Served | None = None
        self._loader = loader
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Loaded. A drain does not change it: a terminating pod's endpoint is not ready to kube-proxy
        anyway, and while it is still `serving` kube-proxy falls back to it when no other pod is ready
        (every pod replaced at once: without that, requests are refused until a new one is ready)."""
        return self.served is not None

    def install(self, model: ServedModel) -> None:
        """Serve ``model`` (called by the loader task, or directly by tests)."""
        s = self.settings
        capture = None
        if s.capture_uri and s.capture_fraction > 0:
            capture = Capture(
                prefix=storage.join_uri(s.capture_uri, s.pod_name),
                fraction=s.capture_fraction,
                numeric_names=model.decoder.numeric_names,
            )
            self._tasks.append(asyncio.get_running_loop().create_task(capture.run()))
        self.served = _Served(
            model=model,
            metrics=Metrics(model=s.model_name, version=s.model_version, features=model.features,
                            prediction=model.prediction_profile, form=model.form),
            store=PredictionStore(capacity=s.feedback_capacity),
            capture=capture,
            metadata=self._metadata(model),
        )

    def begin_drain(self) -> None:
        """Close each connection after its answer from now on; requests are served until the process stops."""
        if not self.draining:
            logger.info("draining: requests are still served, each connection closed after its answer")
        self.draining = True

    async def startup(self) -> None:
        if self._loader is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._load(self._loader)))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.served is not None and self.served.capture is not None:
            await self.served.capture.flush()

    async def _load(self, loader: Callable[[], ServedModel]) -> None:
        started = time.monotonic()
        try:
            model = await asyncio.to_thread(loader)
        except ModelLoadError as exc:
            self.load_error = str(exc)
        except Exception as exc:
            logger.exception("loading the model failed")
            self.load_error = f"{type(exc).__name__}: {exc}"
        else:
            self.install(model)
            # The model's arrays and everything imported so far live as long as the process:
            # freezing them keeps the collector from re-scanning them, which otherwise shows up
            # as multi-millisecond pauses in the latency tail.
            gc.collect()
            gc.freeze()
            s = self.settings
            logger.info("model %s version %s loaded in %.2fs (form: %s)",
                        s.model_name, s.model_version, time.monotonic() - started, model.form)
            return
        logger.error("cannot serve the model: %s", self.load_error)
        self.on_fatal()

    # -- requests -------------------------------------------------------------------------------

    def model_path_known(self, name: str, version: str) -> bool:
        """Whether a request for model ``name`` (``version``, "" for any) is for this server's model."""
        return name == self.settings.model_name and version in ("", self.settings.model_version)

    def unknown_model(self, what: str) -> str:
        s = self.settings
        return f"no model at {what}; this server serves model {s.model_name!r} version {s.model_version!r}"

    def loaded(self) -> _Served:
        if self.served is None:
            raise UnavailableError
        return self.served

    def observe(self, served: _Served | None, *, code: int, started: float) -> None:
        """One answered prediction request (``code`` as HTTP status, also for gRPC)."""
        if served is not None:
            served.metrics.observe_request(code=code, seconds=time.perf_counter() - started)

    def infer(self, served: _Served, doc: Any) -> InferResult:
        """A v2 inference request (inputs as JSON lists or decoded binary elements)."""
        model = served.model
        batch = model.decoder.decode_v2(doc)
        prediction, proba = model.predict(batch, proba="predict_proba" in requested_outputs(doc))
        ids = self._record(served, batch, prediction)
        n = batch.rows
        labels = prediction.labels
        outputs: list[Output] = [
            {"name": "predict", "shape": [n], "datatype": model.output_datatype,
             "data": labels if labels.dtype.kind in "iufb" else [str(v) for v in labels.tolist()]},
            {"name": "prediction_id", "shape": [n], "datatype": "BYTES", "data": ids},
        ]
        if proba is not None:
            outputs.append({"name": "predict_proba", "shape": list(proba.shape), "datatype": "FP64",
                            "data": proba})
        request_id = doc.get("id")
        return InferResult(id=request_id if isinstance(request_id, str) and request_id else ids[0],
                           outputs=outputs)

    def predict_v1(self, served: _Served, doc: Any) -> bytes:
        batch = served.model.decoder.decode_v1(doc)
        prediction, _ = served.model.predict(batch)
        ids = self._record(served, batch, prediction)
        labels = prediction.labels
        data = labels if labels.dtype.kind in "iufb" else labels.tolist()
        return orjson.dumps({"predictions": data, "ids": ids}, option=orjson.OPT_SERIALIZE_NUMPY)

    def _record(self, served: _Served, batch: Batch, prediction: Prediction) -> list[str]:
        """Everything a prediction leaves behind: ids for feedback, metrics, a sampled capture."""
        _, ids = served.store.add(prediction.stored)
        served.metrics.observe_batch(batch, prediction.bins)
        capture = served.capture
        if capture is not None and capture.sampled():
            capture.add_predictions(batch, prediction.labels.tolist(), ids)
        return ids

    def feedback(self, served: _Served, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict) or not isinstance(doc.get("labels"), list):
            raise RequestError(400, 'the body must be {"labels": [{"id": ..., "label": ...}, ...]}')
        items = doc["labels"]
        model = served.model
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or "label" not in item:
                raise RequestError(400, f"labels[{i}] must be an object with a string 'id' and a 'label'")
            label = item["label"]
            if model.classification:
                if not isinstance(label, str | int | float) or label is None:
                    raise RequestError(422, f"labels[{i}]: a class label must be a string or a number")
            elif isinstance(label, bool) or not isinstance(label, int | float):
                raise RequestError(422, f"labels[{i}]: a regression label must be a number")
        metrics, store = served.metrics, served.store
        matched: list[tuple[str, Any]] = []
        unknown: list[str] = []
        duplicate: list[str] = []
        for item in items:
            pid, label = item["id"], item["label"]
            predicted = store.claim(pid)
            if predicted is None:
                (duplicate if store.is_duplicate(pid) else unknown).append(pid)
                continue
            matched.append((pid, label))
            if model.classification:
                metrics.feedback_correct += int(model.class_index(label) == int(predicted))
            else:
                error = float(label) - predicted
                metrics.abs_error_sum += abs(error)
                metrics.squared_error_sum += error * error
        metrics.feedback += len(matched)
        if served.capture is not None and matched:
            served.capture.add_labels(matched)
        return {"matched": len(matched), "unknown": unknown, "duplicate": duplicate}

    def _metadata(self, model: ServedModel) -> dict[str, Any]:
        inputs = [
            {"name": c.name, "datatype": "FP64" if c.numeric else "BYTES", "shape": [-1, 1]}
            for c in model.decoder.columns
        ]
        outputs: list[dict[str, Any]] = [
            {"name": "predict", "datatype": model.output_datatype, "shape": [-1]},
            {"name": "prediction_id", "datatype": "BYTES", "shape": [-1]},
        ]
        if model.has_proba:
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.classes)]})
        return {
            "name": self.settings.model_name,
            "versions": [self.settings.model_version] if self.settings.model_version else [],
            "platform": "sklearn",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {"task": str(model.task), "feature_order": ",".join(model.decoder.names),
                           "form": model.form},
        }


def requested_outputs(doc: Any) -> set[str]:
    """The outputs a v2 request names (predict and prediction_id always come); unknown names: 400."""
    requested = doc.get("outputs") if isinstance(doc, dict) else None
    if requested is None:
        return set()
    if not isinstance(requested, list):
        raise RequestError(400, "'outputs' must be a list")
    names: set[str] = set()
    for i, out in enumerate(requested):
        name = out.get("name") if isinstance(out, dict) else None
        if name not in OUTPUTS:
            raise RequestError(400, f"outputs[{i}]: unknown output {name!r}; known: {', '.join(OUTPUTS)}")
        names.add(name)
    return names


def version() -> str:
    from loopwright import __version__  # noqa: PLC0415 - avoids a cycle at import time

    return __version__
