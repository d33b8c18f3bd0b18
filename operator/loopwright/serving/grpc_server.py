"""The predictor's gRPC transport: the Open Inference Protocol v2 ``inference.GRPCInferenceService``.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, on their own
port (``GRPC_PORT``, 8081), in the same event loop as HTTP and over the same
:class:`~loopwright.serving.dataplane.DataPlane`: one validation, one set of metrics, one store of
prediction ids. Inputs come as ``raw_input_contents`` (what Triton's client sends) or as typed
``contents``; outputs always go as ``raw_output_contents``, which is what v2 clients read.
Errors map as on HTTP: a client's mistake is INVALID_ARGUMENT (never INTERNAL), an unknown
model NOT_FOUND, an unloaded one UNAVAILABLE; the request counter records the HTTP status of
the same outcome (400, 404, 503, ...), so error rates cover both transports. The other methods
of Triton's service (model configuration, repository, shared memory) answer UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np

from loopwright.serving import binary
from loopwright.serving import grpc_predict_v2_pb2 as pb
from loopwright.serving.dataplane import (
    EXTENSIONS,
    SERVER_NAME,
    DataPlane,
    InferResult,
    UnavailableError,
    version,
)
from loopwright.serving.decode import RequestError

logger = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    503: grpc.StatusCode.UNAVAILABLE,
}
# The typed contents field of each datatype (FP16 has none: it travels raw only).
_CONTENTS = {
    "BOOL": ("bool_contents", np.bool_), "INT8": ("int_contents", np.int32),
    "INT16": ("int_contents", np.int32), "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64), "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32), "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64), "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
}  # fmt: skip
_GRACE_SECONDS = 5.0

Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Context], Awaitable[Any]]


class GrpcServer:
    """The gRPC listener (a service of :class:`~loopwright.serving.app.PredictorApp`)."""

    def __init__(self, plane: DataPlane, *, host: str, port: int) -> None:
        self.plane = plane
        self.address = f"{host}:{port}"
        self.port = port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limit = self.plane.settings.max_body_bytes
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                          ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((handlers(self.plane),))
        self.port = server.add_insecure_port(self.address)
        await server.start()
        self._server = server
        logger.info("gRPC (%s) listening on port %d", SERVICE, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(_GRACE_SECONDS)


def handlers(plane: DataPlane) -> grpc.GenericRpcHandler:
    """The v2 service's methods over ``plane``."""
    service = _Service(plane)
    methods: dict[str, tuple[Handler, Any, Any]] = {
        "ServerLive": (service.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
        "ServerReady": (service.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
        "ModelReady": (service.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
        "ServerMetadata": (service.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
        "ModelMetadata": (service.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
        "ModelInfer": (service.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
    }
    return grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request.FromString, response_serializer=response.SerializeToString)
        for name, (method, request, response) in methods.items()
    })


class _Service:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def server_live(self, request: Any, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def server_metadata(self, request: Any, context: Context) -> Any:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=version(), extensions=list(EXTENSIONS))

    async def model_ready(self, request: Any, context: Context) -> Any:
        # A model this server does not serve is simply not ready (HTTP answers 404, which v2
        # clients read as "not ready" as well).
        known = self.plane.model_path_known(request.name, request.version)
        return pb.ModelReadyResponse(ready=known and self.plane.ready)

    async def model_metadata(self, request: Any, context: Context) -> Any:
        plane = self.plane
        if not plane.model_path_known(request.name, request.version):
            return _fail(context, 404, plane.unknown_model(_path(request.name, request.version)),
                         pb.ModelMetadataResponse())
        if plane.served is None:
            return _fail(context, 503, "the model is not loaded yet", pb.ModelMetadataResponse())
        meta = plane.served.metadata
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["inputs"]],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                     for t in meta["outputs"]],
        )

    async def model_infer(self, request: Any, context: Context) -> Any:
        started = time.perf_counter()
        plane = self.plane
        served = plane.served
        try:
            if not plane.model_path_known(request.model_name, request.model_version):
                raise RequestError(404, plane.unknown_model(_path(request.model_name, request.model_version)))
            served = plane.loaded()
            response = _response(plane.infer(served, _request_doc(request)), plane)
            code = 200
        except RequestError as exc:
            code = exc.status
            response = _fail(context, code, exc.message, pb.ModelInferResponse())
        except UnavailableError:
            code = 503
            response = _fail(context, code, "the model is not loaded yet", pb.ModelInferResponse())
        except Exception as exc:
            logger.exception("prediction failed")
            code = 500
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details(f"internal error: {type(exc).__name__}")
            response = pb.ModelInferResponse()
        plane.observe(served, code=code, started=started)
        return response


def _fail(context: Context, status: int, message: str, empty: Any) -> Any:
    context.set_code(_CODES.get(status, grpc.StatusCode.INVALID_ARGUMENT))
    context.set_details(message)
    return empty


def _path(name: str, version: str) -> str:
    return repr(name) + (f" version {version!r}" if version else "")


def _request_doc(request: Any) -> dict[str, Any]:
    """The v2 request as the data plane takes it, with each input's elements decoded."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise RequestError(400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs: list[dict[str, Any]] = []
    for i, tensor in enumerate(request.inputs):
        shape = list(tensor.shape)
        if raw:
            data = binary.decode(raw[i], datatype=tensor.datatype, shape=shape, name=tensor.name)
        else:
            data = _contents(tensor)
        inputs.append({"name": tensor.name, "shape": shape, "datatype": tensor.datatype, "data": data})
    doc: dict[str, Any] = {"id": request.id, "inputs": inputs}
    if request.outputs:
        doc["outputs"] = [{"name": o.name} for o in request.outputs]
    return doc


def _contents(tensor: Any) -> Any:
    if tensor.datatype == "BYTES":
        try:
            return [bytes(v).decode() for v in tensor.contents.bytes_contents]
        except UnicodeDecodeError:
            raise RequestError(422, f"input {tensor.name!r}: an element is not UTF-8 text") from None
    field = _CONTENTS.get(tensor.datatype)
    if field is None:
        raise RequestError(400, f"input {tensor.name!r}: datatype {tensor.datatype!r} cannot travel in "
                                "typed contents; send it in raw_input_contents")
    name, dtype = field
    return np.array(getattr(tensor.contents, name), dtype=dtype)


def _response(result: InferResult, plane: DataPlane) -> Any:
    s = plane.settings
    tensor = pb.ModelInferResponse.InferOutputTensor
    return pb.ModelInferResponse(
        model_name=s.model_name, model_version=s.model_version, id=result.id,
        outputs=[tensor(name=o.name, datatype=o.datatype, shape=o.shape) for o in result.outputs],
        raw_output_contents=[binary.encode(o.data, datatype=o.datatype) for o in result.outputs],
    )
