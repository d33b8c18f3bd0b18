"""The predictor's ASGI application: routing, body limits, the v2/v1 handlers, metrics.

A hand-written ASGI callable rather than a web framework: per request it does
one dict dispatch, one ``orjson`` parse and one ``orjson`` dump around the
prediction, which is what makes the server several times faster than a
framework-based one on small models. Client mistakes are ``RequestError``s
raised by the decoder and turned into 4xx here; anything else is a 500 that
logs its traceback, so a 5xx always means a bug or an unready server.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from loopwright import storage
from loopwright.serving.capture import Capture
from loopwright.serving.decode import RequestError
from loopwright.serving.feedback import PredictionStore
from loopwright.serving.metrics import Metrics
from loopwright.serving.model import ModelLoadError, Prediction, ServedModel

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = b"application/json"
_TEXT = b"text/plain; version=0.0.4; charset=utf-8"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class SettingsError(Exception):
    """The environment does not describe a servable model."""


@dataclass(frozen=True)
class Settings:
    """The predictor's configuration (environment variables of the predictor contract)."""

    model_name: str
    model_uri: str
    model_sha256: str
    profile_uri: str
    model_version: str = ""
    profile_sha256: str | None = None
    host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on the pod's address
    port: int = 8080
    max_body_bytes: int = 1 << 20
    capture_uri: str | None = None
    capture_fraction: float = 0.0
    pod_name: str = "predictor"
    drain_seconds: float = 5.0
    feedback_capacity: int = 100_000

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [
            k
            for k in (
                "LOOPWRIGHT_MODEL_NAME",
                "LOOPWRIGHT_MODEL_URI",
                "LOOPWRIGHT_MODEL_SHA256",
                "LOOPWRIGHT_PROFILE_URI",
            )
            if not env.get(k)
        ]
        if missing:
            raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")
        try:
            settings = cls(
                model_name=env["LOOPWRIGHT_MODEL_NAME"],
                model_version=env.get("LOOPWRIGHT_MODEL_VERSION", ""),
                model_uri=env["LOOPWRIGHT_MODEL_URI"],
                model_sha256=env["LOOPWRIGHT_MODEL_SHA256"],
                profile_uri=env["LOOPWRIGHT_PROFILE_URI"],
                profile_sha256=env.get("LOOPWRIGHT_PROFILE_SHA256") or None,
                host=env.get("HOST", "0.0.0.0"),  # noqa: S104
                port=int(env.get("PORT", "8080")),
                max_body_bytes=int(env.get("LOOPWRIGHT_MAX_BODY_BYTES", str(1 << 20))),
                capture_uri=env.get("LOOPWRIGHT_CAPTURE_URI") or None,
                capture_fraction=float(env.get("LOOPWRIGHT_CAPTURE_FRACTION", "0")),
                pod_name=env.get("POD_NAME") or env.get("HOSTNAME") or "predictor",
                drain_seconds=float(env.get("LOOPWRIGHT_DRAIN_SECONDS", "5")),
                feedback_capacity=int(env.get("LOOPWRIGHT_FEEDBACK_CAPACITY", "100000")),
            )
        except ValueError as exc:
            raise SettingsError(f"invalid setting: {exc}") from exc
        if not 0.0 <= settings.capture_fraction <= 1.0:
            raise SettingsError("LOOPWRIGHT_CAPTURE_FRACTION must be between 0 and 1")
        if settings.max_body_bytes < 1 or settings.feedback_capacity < 1 or settings.drain_seconds < 0:
            raise SettingsError(
                "body limit and feedback capacity must be positive, drain seconds not negative"
            )
        return settings


@dataclass(frozen=True)
class _Served:
    """What exists once the model is loaded; swapped in as a whole so handlers see all or nothing."""

    model: ServedModel
    metrics: Metrics
    store: PredictionStore
    capture: Capture | None
    metadata: bytes  # the v2 model metadata response, rendered once


class PredictorApp:
    """The ASGI application. ``loader`` runs in a thread at start-up (lifespan)."""

    def __init__(self, *, settings: Settings, loader: Callable[[], ServedModel] | None = None) -> None:
        self.settings = settings
        self.draining = False
        self.load_error: str | None = None
        self.on_fatal: Callable[[], None] = lambda: None
        self._served: _Served | None = None
        self._loader = loader
        self._tasks: list[asyncio.Task[None]] = []
        name = settings.model_name
        self._v2_prefixes = (f"/v2/models/{name}", f"/v2/models/{name}/versions/{settings.model_version}")

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._served is not None and not self.draining

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
        served = _Served(
            model=model,
            metrics=Metrics(
                model=s.model_name,
                version=s.model_version,
                features=model.features,
                prediction=model.prediction_profile,
            ),
            store=PredictionStore(capacity=s.feedback_capacity),
            capture=capture,
            metadata=orjson.dumps(self._metadata(model)),
        )
        self._served = served

    def begin_drain(self) -> None:
        """Fail readiness from now on; requests keep being served until the process stops."""
        if not self.draining:
            logger.info("draining: readiness now fails, in-flight and new requests are still served")
        self.draining = True

    async def startup(self) -> None:
        if self._loader is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._load(self._loader)))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._served is not None and self._served.capture is not None:
            await self._served.capture.flush()

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
            elapsed = time.monotonic() - started
            logger.info(
                "model %s version %s loaded in %.2fs (fast path: %s)",
                s.model_name, s.model_version, elapsed, model.fast_path,
            )  # fmt: skip
            return
        logger.error("cannot serve the model: %s", self.load_error)
        self.on_fatal()

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if self.draining:
            send = _closing(send)
        if path.startswith("/v2/models/"):
            await self._v2_model(scope, receive, send, path, method)
        elif path.startswith("/v1/models/"):
            await self._v1_model(scope, receive, send, path, method)
        elif path == "/v2/health/ready":
            ready = self.ready
            await _respond(send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}')
        elif path == "/v2/health/live":
            await _respond(send, 200, b'{"live":true}')
        elif path == "/metrics":
            served = self._served
            await _respond(send, 200, served.metrics.render() if served else b"", _TEXT)
        elif path == "/v2":
            body = {"name": "loopwright-predictor", "version": _version(), "extensions": []}
            await _respond(send, 200, orjson.dumps(body))
        else:
            await _error(send, 404, f"no route for {path}")

    async def _v2_model(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        base, _, action = path.rpartition("/")
        if action == "infer":
            if method != "POST":
                await _error(send, 405, "use POST for infer")
            elif base not in self._v2_prefixes:
                await self._predict_endpoint(scope, receive, send, unknown=base)
            else:
                await self._predict_endpoint(scope, receive, send, unknown=None, v2=True)
            return
        if action == "ready":
            target, is_ready = base, True
        else:
            target, is_ready = path, False
        if target not in self._v2_prefixes:
            await _error(send, 404, self._unknown_model(target))
        elif method != "GET":
            await _error(send, 405, "use GET")
        elif is_ready:
            ready = self.ready
            await _respond(send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}')
        elif self._served is None:
            await _error(send, 503, "the model is not loaded yet")
        else:
            await _respond(send, 200, self._served.metadata)

    async def _v1_model(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        mine = f"/v1/models/{self.settings.model_name}"
        if path.endswith(":predict"):
            if method != "POST":
                await _error(send, 405, "use POST for predict")
            else:
                base = path[: -len(":predict")]
                await self._predict_endpoint(scope, receive, send, unknown=None if base == mine else base)
        elif path.endswith("/feedback"):
            if path[: -len("/feedback")] != mine:
                await _error(send, 404, self._unknown_model(path[: -len("/feedback")]))
            elif method != "POST":
                await _error(send, 405, "use POST for feedback")
            else:
                await self._feedback(scope, receive, send)
        elif path == mine:
            await _respond(send, 200, orjson.dumps({"name": self.settings.model_name, "ready": self.ready}))
        else:
            await _error(send, 404, self._unknown_model(path))

    def _unknown_model(self, path: str) -> str:
        s = self.settings
        return f"no model at {path}; this server serves model {s.model_name!r} version {s.model_version!r}"

    # -- prediction -----------------------------------------------------------------------------

    async def _predict_endpoint(
        self, scope: Scope, receive: Receive, send: Send, *, unknown: str | None, v2: bool = False
    ) -> None:
        started = time.perf_counter()
        served = self._served
        try:
            if unknown is not None:
                raise RequestError(404, self._unknown_model(unknown))
            if served is None:
                raise _UnavailableError
            doc = _parse(await _read_body(scope, receive, self.settings.max_body_bytes))
            body = self._predict_v2(served, doc) if v2 else self._predict_v1(served, doc)
            code = 200
        except RequestError as exc:
            code, body = exc.status, orjson.dumps({"error": exc.message})
        except _UnavailableError:
            code, body = 503, b'{"error":"the model is not loaded yet"}'
        except _DisconnectedError:
            return
        except Exception as exc:
            logger.exception("prediction failed")
            code, body = 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}"})
        await _respond(send, code, body)
        if served is not None:
            served.metrics.observe_request(code=code, seconds=time.perf_counter() - started)

    def _predict_v2(self, served: _Served, doc: Any) -> bytes:
        model = served.model
        batch = model.decoder.decode_v2(doc)
        want_proba = _requested_outputs(doc)
        proba = model.predict_proba(batch) if want_proba else None
        prediction = model.predict(batch)
        ids = self._record(served, batch, prediction)
        n = batch.rows
        labels = prediction.labels
        outputs: list[dict[str, Any]] = [
            {
                "name": "predict",
                "shape": [n],
                "datatype": model.output_datatype,
                "data": labels if labels.dtype.kind in "iufb" else labels.tolist(),
            },
            {"name": "prediction_id", "shape": [n], "datatype": "BYTES", "data": ids},
        ]
        if proba is not None:
            outputs.append(
                {"name": "predict_proba", "shape": list(proba.shape), "datatype": "FP64", "data": proba}
            )
        request_id = doc.get("id")
        response = {
            "model_name": self.settings.model_name,
            "model_version": self.settings.model_version,
            "id": request_id if isinstance(request_id, str) else ids[0],
            "outputs": outputs,
        }
        return orjson.dumps(response, option=_NUMPY)

    def _predict_v1(self, served: _Served, doc: Any) -> bytes:
        batch = served.model.decoder.decode_v1(doc)
        prediction = served.model.predict(batch)
        ids = self._record(served, batch, prediction)
        labels = prediction.labels
        data = labels if labels.dtype.kind in "iufb" else labels.tolist()
        return orjson.dumps({"predictions": data, "ids": ids}, option=_NUMPY)

    def _record(self, served: _Served, batch: Any, prediction: Prediction) -> list[str]:
        """Everything a prediction leaves behind: ids for feedback, metrics, a sampled capture."""
        _, ids = served.store.add(prediction.stored)
        served.metrics.observe_batch(batch, prediction.bins)
        capture = served.capture
        if capture is not None and capture.sampled():
            capture.add_predictions(batch, prediction.labels.tolist(), ids)
        return ids

    # -- feedback -------------------------------------------------------------------------------

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = self._served
        try:
            if served is None:
                raise _UnavailableError
            doc = _parse(await _read_body(scope, receive, self.settings.max_body_bytes))
            body = orjson.dumps(self._score(served, doc))
            code = 200
        except RequestError as exc:
            code, body = exc.status, orjson.dumps({"error": exc.message})
        except _UnavailableError:
            code, body = 503, b'{"error":"the model is not loaded yet"}'
        except _DisconnectedError:
            return
        await _respond(send, code, body)

    def _score(self, served: _Served, doc: Any) -> dict[str, Any]:
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
        if model.classification and hasattr(model.estimator, "predict_proba"):
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.classes)]})
        return {
            "name": self.settings.model_name,
            "versions": [self.settings.model_version] if self.settings.model_version else [],
            "platform": "sklearn",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {"task": str(model.task), "feature_order": ",".join(model.decoder.names)},
        }


class _UnavailableError(Exception):
    """No model loaded (yet): 503, the one 5xx that is not a bug."""


class _DisconnectedError(Exception):
    """The client went away before sending its body; nothing to answer."""


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise RequestError(400, "invalid Content-Length") from None
            if declared > limit:
                raise RequestError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _DisconnectedError
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None


def _requested_outputs(doc: dict[str, Any]) -> bool:
    """Whether ``predict_proba`` was asked for; unknown output names are a 400."""
    requested = doc.get("outputs")
    if requested is None:
        return False
    if not isinstance(requested, list):
        raise RequestError(400, "'outputs' must be a list")
    proba = False
    for i, out in enumerate(requested):
        name = out.get("name") if isinstance(out, dict) else None
        if name == "predict_proba":
            proba = True
        elif name not in {"predict", "prediction_id"}:
            raise RequestError(400, f"outputs[{i}]: unknown output {name!r}; known: predict, predict_proba")
    return proba


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = _JSON) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _closing(send: Send) -> Send:
    """``send`` with ``Connection: close`` on the response.

    While draining, a keep-alive client (or a proxy holding a pooled connection) would keep
    reusing its connection to this pod until the process exits and the connection breaks,
    possibly under a request. Closing after each answer moves it to a ready replica instead.
    """

    async def send_closing(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return send_closing


async def _error(send: Send, status: int, message: str) -> None:
    await _respond(send, status, orjson.dumps({"error": message}))


def _version() -> str:
    from loopwright import __version__  # noqa: PLC0415 - avoids a cycle at import time

    return __version__
