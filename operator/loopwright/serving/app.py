"""The predictor's HTTP transport: an ASGI callable over the data plane.

A hand-written ASGI callable rather than a web framework: per request it does one dict
dispatch, one ``orjson`` parse and one ``orjson`` dump around the prediction, which is what
makes the server several times faster than a framework-based one on small models. It speaks
the Open Inference Protocol v2 in JSON and with the binary tensor data extension
(:mod:`.binary`: the default of Triton's client), gzip- or deflate-compressed request bodies,
and the plain ``/v1`` JSON API. Client mistakes are ``RequestError``s turned into 4xx here;
anything else is a 500 that logs its traceback, so a 5xx always means a bug or an unready server.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import orjson

from loopwright.serving import binary
from loopwright.serving.dataplane import (
    EXTENSIONS,
    SERVER_NAME,
    DataPlane,
    InferResult,
    UnavailableError,
    version,
)
from loopwright.serving.decode import RequestError
from loopwright.serving.model import ServedModel
from loopwright.serving.settings import Settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = b"application/json"
_OCTETS = b"application/octet-stream"
_TEXT = b"text/plain; version=0.0.4; charset=utf-8"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_HEADER_LENGTH = b"inference-header-content-length"


class Service(Protocol):
    """Something that lives as long as the server (the gRPC transport): started after the model
    load is under way, stopped after the HTTP listener."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class PredictorApp:
    """The ASGI application over one :class:`DataPlane` (``app.plane``)."""

    def __init__(self, *, settings: Settings, loader: Callable[[], ServedModel] | None = None) -> None:
        self.plane = DataPlane(settings=settings, loader=loader)
        self.services: list[Service] = []
        name = settings.model_name
        self._v2_prefixes = (f"/v2/models/{name}", f"/v2/models/{name}/versions/{settings.model_version}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.plane.startup()
                for service in self.services:
                    await service.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for service in self.services:
                    await service.stop()
                await self.plane.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        plane = self.plane
        if plane.draining:
            send = _closing(send)
        if path.startswith("/v2/models/"):
            await self._v2_model(scope, receive, send, path, method)
        elif path.startswith("/v1/models/"):
            await self._v1_model(scope, receive, send, path, method)
        elif path == "/v2/health/ready":
            ready = plane.ready
            await _respond(send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}')
        elif path == "/v2/health/live":
            await _respond(send, 200, b'{"live":true}')
        elif path == "/metrics":
            served = plane.served
            text = b""
            if served is not None:
                dropped = served.capture.dropped if served.capture is not None else None
                text = served.metrics.render(capture_dropped=dropped)
            await _respond(send, 200, text, _TEXT)
        elif path == "/v2":
            body = {"name": SERVER_NAME, "version": version(), "extensions": list(EXTENSIONS)}
            await _respond(send, 200, orjson.dumps(body))
        else:
            await _error(send, 404, f"no route for {path}")

    async def _v2_model(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        base, _, action = path.rpartition("/")
        if action == "infer":
            if method != "POST":
                await _error(send, 405, "use POST for infer")
            else:
                await self._predict(scope, receive, send, unknown=None if base in self._v2_prefixes else base)
            return
        target, is_ready = (base, True) if action == "ready" else (path, False)
        plane = self.plane
        if target not in self._v2_prefixes:
            await _error(send, 404, plane.unknown_model(target))
        elif method != "GET":
            await _error(send, 405, "use GET")
        elif is_ready:
            ready = plane.ready
            await _respond(send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}')
        elif plane.served is None:
            await _error(send, 503, "the model is not loaded yet")
        else:
            await _respond(send, 200, orjson.dumps(plane.served.metadata))

    async def _v1_model(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        plane = self.plane
        mine = f"/v1/models/{plane.settings.model_name}"
        if path.endswith(":predict"):
            if method != "POST":
                await _error(send, 405, "use POST for predict")
            else:
                base = path[: -len(":predict")]
                await self._predict(scope, receive, send, unknown=None if base == mine else base, v1=True)
        elif path.endswith("/feedback"):
            if path[: -len("/feedback")] != mine:
                await _error(send, 404, plane.unknown_model(path[: -len("/feedback")]))
            elif method != "POST":
                await _error(send, 405, "use POST for feedback")
            else:
                await self._feedback(scope, receive, send)
        elif path == mine:
            await _respond(send, 200, orjson.dumps({"name": plane.settings.model_name, "ready": plane.ready}))
        else:
            await _error(send, 404, plane.unknown_model(path))

    async def _predict(
        self, scope: Scope, receive: Receive, send: Send, *, unknown: str | None, v1: bool = False
    ) -> None:
        started = time.perf_counter()
        plane = self.plane
        served = plane.served
        content_type = _JSON
        headers: list[tuple[bytes, bytes]] = []
        try:
            if unknown is not None:
                raise RequestError(404, plane.unknown_model(unknown))
            served = plane.loaded()
            body, header_length = await _read_body(scope, receive, plane.settings.max_body_bytes)
            if v1:
                payload = plane.predict_v1(served, _parse(body))
            else:
                if header_length is None:
                    doc = _parse(body)
                elif header_length > len(body):
                    raise RequestError(400, f"Inference-Header-Content-Length {header_length} exceeds the "
                                            f"body of {len(body)} bytes")
                else:
                    doc = _parse(body[:header_length])
                    if isinstance(doc, dict):
                        binary.attach(doc, body[header_length:])
                payload, json_size = _encode(plane.infer(served, doc), plane, doc)
                if json_size is not None:
                    content_type = _OCTETS
                    headers.append((_HEADER_LENGTH, str(json_size).encode()))
            code = 200
        except RequestError as exc:
            code, payload = exc.status, orjson.dumps({"error": exc.message})
        except UnavailableError:
            code, payload = 503, b'{"error":"the model is not loaded yet"}'
        except _DisconnectedError:
            return
        except Exception as exc:
            logger.exception("prediction failed")
            code, payload = 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}"})
        await _respond(send, code, payload, content_type, headers)
        plane.observe(served, code=code, started=started)

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        plane = self.plane
        refusal = _feedback_refusal(plane.settings.feedback_token, scope)
        if refusal is not None:
            code, message, headers = refusal
            await _respond(send, code, orjson.dumps({"error": message}), _JSON, headers)
            return
        try:
            served = plane.loaded()
            body, _ = await _read_body(scope, receive, plane.settings.max_body_bytes)
            payload = orjson.dumps(plane.feedback(served, _parse(body)))
            code = 200
        except RequestError as exc:
            code, payload = exc.status, orjson.dumps({"error": exc.message})
        except UnavailableError:
            code, payload = 503, b'{"error":"the model is not loaded yet"}'
        except _DisconnectedError:
            return
        await _respond(send, code, payload)


def _feedback_refusal(token: str | None, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
    """Why a feedback request is refused (code, message, headers), or None when its bearer token is right.

    Labels move live performance figures, can trigger retraining and join captured data, so
    reaching the Service is not enough: the client proves it holds the Deployment's token.
    """
    if token is None:
        return 403, "feedback is off: the Deployment names no spec.feedback.tokenSecretRef", []
    sent = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
    if hmac.compare_digest(sent, b"Bearer " + token.encode()):
        return None
    return 401, "feedback needs the header Authorization: Bearer <token>", [(b"www-authenticate", b"Bearer")]


class _DisconnectedError(Exception):
    """The client went away before sending its body; nothing to answer."""


def _encode(result: InferResult, plane: DataPlane, doc: dict[str, Any]) -> tuple[bytes, int | None]:
    """The response body and, when outputs go as binary data after it, the JSON header's length.

    An output is binary when asked for (``"binary_data": true``), or all are with the request's
    ``"binary_data_output": true``; otherwise the whole answer is JSON.
    """
    s = plane.settings
    head = {"model_name": s.model_name, "model_version": s.model_version, "id": result.id}
    params = doc.get("parameters")
    every = isinstance(params, dict) and params.get("binary_data_output") is True
    requested = doc.get("outputs")
    wanted = {
        o["name"] for o in requested
        if isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True
    } if requested else ()
    if not every and not wanted:  # plain JSON, the common case
        return orjson.dumps({**head, "outputs": result.outputs}, option=_NUMPY), None
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for o in result.outputs:
        entry: dict[str, Any] = {"name": o["name"], "shape": o["shape"], "datatype": o["datatype"]}
        if every or o["name"] in wanted:
            raw = binary.encode(o["data"], datatype=o["datatype"])
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = o["data"]
        outputs.append(entry)
    header = orjson.dumps({**head, "outputs": outputs}, option=_NUMPY)
    return header + b"".join(chunks), len(header)


async def _read_body(scope: Scope, receive: Receive, limit: int) -> tuple[bytes, int | None]:
    """The (decompressed) body and the binary extension's JSON header length, if given."""
    header_length: int | None = None
    encoding = b""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise RequestError(400, "invalid Content-Length") from None
            if declared > limit:
                raise RequestError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
        elif name == _HEADER_LENGTH:
            try:
                header_length = int(value)
            except ValueError:
                header_length = -1
            if header_length < 0:
                raise RequestError(400, "Inference-Header-Content-Length must be a non-negative integer")
        elif name == b"content-encoding":
            encoding = value.strip().lower()
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _DisconnectedError
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        body = await _receive_rest(receive, body, limit)
    elif len(body) > limit:
        raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
    if encoding in (b"", b"identity"):
        return body, header_length
    if encoding not in (b"gzip", b"deflate"):
        raise RequestError(415, f"unsupported Content-Encoding {encoding.decode(errors='replace')!r}")
    inflater = zlib.decompressobj(wbits=31 if encoding == b"gzip" else 15)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(400, f"cannot decompress the {encoding.decode()} body: {exc}") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise RequestError(413, f"the decompressed request body exceeds the limit of {limit} bytes")
    return plain, header_length


async def _receive_rest(receive: Receive, first: bytes, limit: int) -> bytes:
    """A body that comes in several messages, ``first`` being the first one's."""
    chunks = [first]
    size = len(first)
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _parse(body: bytes) -> Any:
    """The JSON body. Python clients (Triton's among them) write a missing float as ``NaN``, which
    strict JSON and orjson refuse: such a body is read again by the standard library, which takes
    NaN (then a missing value, for nullable features) and Infinity (then refused as not finite)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(body)
        except ValueError:
            raise RequestError(400, f"malformed JSON: {exc}") from None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
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
