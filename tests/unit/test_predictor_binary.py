"""The binary tensor data extension and the gRPC transport, in process: wire details and mistakes."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loopwright.serving import binary
from loopwright.serving import grpc_predict_v2_pb2 as pb
from loopwright.serving.app import PredictorApp
from loopwright.serving.grpc_server import SERVICE, GrpcServer
from unit.test_predictor import NAMES, ROWS, _app, _served

pytestmark = pytest.mark.anyio
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    served = _served(LogisticRegression(), nullable_score=True)
    app = _app(served, max_body_bytes=4096)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
        yield c, served


def _binary_request(rows: list[list[float]], **params: Any) -> tuple[bytes, dict[str, str]]:
    """Each feature as a binary FP64 tensor, the way Triton's HTTP client sends them."""
    columns = np.array(rows, dtype="<f8").T
    header = {
        "inputs": [{"name": n, "shape": [len(rows), 1], "datatype": "FP64",
                    "parameters": {"binary_data_size": columns[j].nbytes}} for j, n in enumerate(NAMES)],
        **params,
    }
    text = json.dumps(header).encode()
    return text + b"".join(c.tobytes() for c in columns), {"Inference-Header-Content-Length": str(len(text))}


def _outputs(response: httpx.Response) -> dict[str, Any]:
    """Output name -> elements, reading binary outputs after the JSON header."""
    length = response.headers.get("inference-header-content-length")
    body = response.content
    header = json.loads(body if length is None else body[: int(length)])
    data = body[int(length):] if length is not None else b""
    out, offset = {}, 0
    for o in header["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is None:
            out[o["name"]] = o["data"]
            continue
        out[o["name"]] = binary.decode(data[offset:offset + size], datatype=o["datatype"], shape=o["shape"],
                                       name=o["name"])
        offset += size
    return out


async def test_binary_inputs_and_outputs(client: Any) -> None:
    c, served = client
    body, headers = _binary_request(ROWS, parameters={"binary_data_output": True})
    r = await c.post("/v2/models/credit/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    out = _outputs(r)
    np.testing.assert_array_equal(out["predict"], served.estimator.predict(np.array(ROWS)))
    assert len(set(out["prediction_id"])) == 3
    # Binary inputs, JSON outputs: no header-length header, a plain JSON answer.
    body, headers = _binary_request(ROWS)
    r = await c.post("/v2/models/credit/infer", content=body, headers=headers)
    assert "inference-header-content-length" not in r.headers
    assert r.json()["outputs"][0]["data"] == served.estimator.predict(np.array(ROWS)).tolist()


async def test_one_output_as_binary_on_request(client: Any) -> None:
    c, served = client
    wanted = [{"name": "predict"}, {"name": "predict_proba", "parameters": {"binary_data": True}}]
    body, headers = _binary_request(ROWS, outputs=wanted)
    out = _outputs(await c.post("/v2/models/credit/infer", content=body, headers=headers))
    assert isinstance(out["predict"], list)
    proba = out["predict_proba"].reshape(3, 2)
    np.testing.assert_allclose(proba, served.estimator.predict_proba(np.array(ROWS)), rtol=0, atol=1e-12)


def _with_header(text: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    return text + data, {"Inference-Header-Content-Length": str(len(text))}


@pytest.mark.parametrize(("mutate", "status", "fragment"), [
    (lambda b, h: (b[:-8], h), 400, "runs past the body"),
    (lambda b, h: (b.replace(b'"score", "shape": [3, 1]', b'"score", "shape": [2, 1]'), h), 400,
     "24 bytes of data for shape [2, 1]"),
    (lambda b, h: (b + b"\0" * 8, h), 400, "bytes after the binary inputs"),
    (lambda b, h: (b, {"Inference-Header-Content-Length": str(len(b) + 1)}), 400, "exceeds the body"),
    (lambda b, h: (b, {"Inference-Header-Content-Length": "-4"}), 400, "non-negative"),
    (lambda b, h: (b, {"Inference-Header-Content-Length": "10"}), 400, "malformed JSON"),
])
async def test_broken_binary_requests_are_400(client: Any, mutate: Any, status: int, fragment: str) -> None:
    c, _ = client
    body, headers = mutate(*_binary_request(ROWS))
    r = await c.post("/v2/models/credit/infer", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


async def test_binary_bytes_and_bool_elements_are_validated(client: Any) -> None:
    c, _ = client
    text = json.dumps({"inputs": [
        {"name": "age", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "score", "shape": [1], "datatype": "BOOL", "parameters": {"binary_data_size": 1}},
    ]}).encode()
    r = await c.post("/v2/models/credit/infer", content=text + struct.pack("<I", 2) + b"\xff\xfe" + b"\x01",
                     headers={"Inference-Header-Content-Length": str(len(text))})
    assert r.status_code == 422
    assert "not UTF-8" in r.json()["error"]
    r = await c.post("/v2/models/credit/infer", content=text + struct.pack("<I", 2) + b"40" + b"\x07",
                     headers={"Inference-Header-Content-Length": str(len(text))})
    assert r.status_code == 400
    assert "0 or 1" in r.json()["error"]


async def test_compressed_bodies(client: Any) -> None:
    c, served = client
    doc = {"inputs": [{"name": n, "shape": [3], "datatype": "FP64", "data": [r[j] for r in ROWS]}
                      for j, n in enumerate(NAMES)]}
    plain = json.dumps(doc).encode()
    expected = served.estimator.predict(np.array(ROWS)).tolist()
    for encoding, data in (("gzip", gzip.compress(plain)), ("deflate", zlib.compress(plain))):
        r = await c.post("/v2/models/credit/infer", content=data, headers={"Content-Encoding": encoding})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == expected
    bomb = gzip.compress(b" " * 100_000)  # far under the limit compressed, far over it inflated
    r = await c.post("/v2/models/credit/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    r = await c.post("/v2/models/credit/infer", content=plain, headers={"Content-Encoding": "br"})
    assert r.status_code == 415


async def test_nan_from_python_clients_is_a_missing_value(client: Any) -> None:
    c, _ = client
    text = '{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [30]},' \
           ' {"name": "income", "shape": [1], "datatype": "FP64", "data": [1000]},' \
           ' {"name": "score", "shape": [1], "datatype": "FP64", "data": [%s]}]}'
    r = await c.post("/v2/models/credit/infer", content=(text % "NaN").encode())
    assert r.status_code == 422  # a logistic regression takes no missing value (score is nullable)
    assert "NaN" in r.json()["error"]
    r = await c.post("/v2/models/credit/infer", content=(text % "Infinity").encode())
    assert r.status_code == 422
    assert "not finite" in r.json()["error"]


# -- gRPC -----------------------------------------------------------------------------------------


@pytest.fixture
async def grpc_channel() -> AsyncIterator[tuple[grpc.aio.Channel, PredictorApp]]:
    app = _app(_served(LogisticRegression()))
    server = GrpcServer(app.plane, host="127.0.0.1", port=0)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel, app
    await server.stop()


async def _infer(channel: grpc.aio.Channel, request: Any) -> Any:
    call = channel.unary_unary(f"/{SERVICE}/ModelInfer",
                               request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)
    return await call(request)


def _typed(rows: list[list[float]]) -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor
    return pb.ModelInferRequest(model_name="credit", inputs=[
        tensor(name=n, datatype="FP64", shape=[len(rows)], contents=pb.InferTensorContents(
            fp64_contents=[r[j] for r in rows])) for j, n in enumerate(NAMES)])


async def test_grpc_typed_contents_and_raw_outputs(grpc_channel: Any) -> None:
    channel, app = grpc_channel
    response = await _infer(channel, _typed(ROWS))
    expected = app.plane.served.model.estimator.predict(np.array(ROWS))
    got = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
    np.testing.assert_array_equal(got, expected)
    assert [o.name for o in response.outputs] == ["predict", "prediction_id"]
    assert response.model_version == "3"


@pytest.mark.parametrize(("change", "code", "fragment"), [
    (lambda r: r.raw_input_contents.append(b"\0" * 8), INVALID, "raw_input_contents"),
    (lambda r: r.inputs[0].ClearField("contents"), INVALID, "does not match"),
    (lambda r: setattr(r.inputs[0], "datatype", "FP16"), INVALID, "raw_input_contents"),
    (lambda r: setattr(r, "model_name", "other"), grpc.StatusCode.NOT_FOUND, "no model"),
    (lambda r: r.outputs.add(name="logits"), INVALID, "unknown output"),
])
async def test_grpc_mistakes_map_to_status_codes(
    grpc_channel: Any, change: Any, code: Any, fragment: str
) -> None:
    channel, _ = grpc_channel
    request = _typed(ROWS)
    change(request)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _infer(channel, request)
    assert failed.value.code() == code
    assert fragment in (failed.value.details() or "")


async def test_grpc_before_the_model_is_loaded_is_unavailable() -> None:
    app = _app(None)
    server = GrpcServer(app.plane, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await _infer(channel, _typed(ROWS))
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop()
