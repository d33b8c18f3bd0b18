"""The predictor as a new user meets it: a process serving a compiled model, driven by the Open
Inference Protocol v2 clients people already have (Triton's tritonclient, HTTP and gRPC).

The HTTP client sends inputs and asks for outputs with the binary tensor data extension by
default; both clients must get the scikit-learn pipeline's own answers, and a client's mistake
must come back as a 4xx / INVALID_ARGUMENT, never a 5xx / INTERNAL. The same process proves that
serving a compiled model imports neither scikit-learn nor SciPy nor pandas.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from loopwright import artifacts, storage
from loopwright.compiled import compiler
from unit.test_predictor import _mixed_frame, _mixed_served
from unit.test_predictor_server import _port, _wait

pytestmark = pytest.mark.slow

# Runs the predictor's own entry point and, at exit, lists every module the process imported.
WRAPPER = """
import atexit, os, sys
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write("\\n".join(sorted(sys.modules))))
from loopwright.serving.__main__ import main
main()
"""
FORBIDDEN = ("sklearn", "scipy", "pandas")


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], http: int, grpc: int, log: Path, modules: Path) -> None:
        self.proc, self.http, self.grpc, self.log, self.modules = proc, http, grpc, log, modules

    def stop(self) -> set[str]:
        """SIGTERM, wait for the drain, and the top-level packages the process had imported."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.log.read_text()
        return {m.split(".")[0] for m in self.modules.read_text().split()}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Any, Path]:
    tmp = tmp_path_factory.mktemp("clients")
    served, pipeline = _mixed_served(LogisticRegression(), sparse_threshold=0.3)
    model_sha = artifacts.save(pipeline, str(tmp / "model.skops"))
    (tmp / "profile.json").write_text(json.dumps(served.profile.to_wire()))
    compiled = compiler.dumps(pipeline)
    (tmp / "model.lwc").write_bytes(compiled)
    env = {
        "LOOPWRIGHT_MODEL_NAME": "credit",
        "LOOPWRIGHT_MODEL_VERSION": "4",
        "LOOPWRIGHT_MODEL_URI": str(tmp / "model.skops"),
        "LOOPWRIGHT_MODEL_SHA256": model_sha,
        "LOOPWRIGHT_PROFILE_URI": str(tmp / "profile.json"),
        "LOOPWRIGHT_COMPILED_URI": str(tmp / "model.lwc"),
        "LOOPWRIGHT_COMPILED_SHA256": storage.sha256_hex(compiled),
        "LOOPWRIGHT_DRAIN_SECONDS": "0",
    }
    return env, pipeline, tmp


def _start(env: dict[str, str], tmp: Path, name: str) -> Server:
    http, grpc = _port(), _port()
    log, modules = tmp / f"{name}.log", tmp / f"{name}.modules"
    full = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(http), "GRPC_PORT": str(grpc),
            "MODULES_OUT": str(modules)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", WRAPPER], env=full, stdout=out,
                                stderr=subprocess.STDOUT)
    server = Server(proc, http, grpc, log, modules)
    try:
        _wait(f"http://127.0.0.1:{http}/v2/health/ready", proc, log)
    except BaseException:
        proc.kill()
        raise
    return server


@pytest.fixture(scope="module")
def server(model: tuple[dict[str, str], Any, Path]) -> Iterator[Server]:
    env, _, tmp = model
    s = _start(env, tmp, "compiled")
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(timeout=10)


def _rows() -> pd.DataFrame:
    frame = _mixed_frame(40, 9, unseen=True)  # missing values, and regions the model never saw
    return frame[frame["region"].notna()].reset_index(drop=True)  # BYTES tensors carry no null


def _inputs(module: Any, frame: pd.DataFrame, *, binary: bool = True) -> list[Any]:
    n = len(frame)
    columns = [("age", "FP64", frame[["age"]].to_numpy()), ("score", "FP64", frame[["score"]].to_numpy()),
               ("region", "BYTES", frame[["region"]].to_numpy(dtype=object))]
    inputs = []
    for name, datatype, data in columns:
        tensor = module.InferInput(name, [n, 1], datatype)
        if module is httpclient:
            tensor.set_data_from_numpy(data, binary_data=binary)
        else:
            tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def test_triton_http_client_with_binary_tensors_and_json(server: Server, model: Any) -> None:
    _, pipeline, _ = model
    frame = _rows()
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("credit")
    meta = client.get_model_metadata("credit")
    assert [i["name"] for i in meta["inputs"]] == ["age", "score", "region"]
    assert meta["parameters"]["form"] == "compiled"
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

    # The client's defaults: binary inputs, and every output as binary data.
    result = client.infer("credit", _inputs(httpclient, frame))
    np.testing.assert_array_equal(result.as_numpy("predict"), pipeline.predict(frame))
    ids = result.as_numpy("prediction_id")
    assert len(set(ids.tolist())) == len(frame)

    # Probabilities asked for explicitly, as binary; then everything as JSON.
    wanted = [httpclient.InferRequestedOutput("predict"), httpclient.InferRequestedOutput("predict_proba")]
    proba = client.infer("credit", _inputs(httpclient, frame), outputs=wanted).as_numpy("predict_proba")
    np.testing.assert_allclose(proba, pipeline.predict_proba(frame), rtol=0, atol=1e-12)
    as_json = [httpclient.InferRequestedOutput("predict", binary_data=False)]
    plain = client.infer("credit", _inputs(httpclient, frame, binary=False), outputs=as_json)
    np.testing.assert_array_equal(plain.as_numpy("predict"), pipeline.predict(frame))

    # Compressed request bodies, as the client sends them when asked to.
    zipped = client.infer("credit", _inputs(httpclient, frame), request_compression_algorithm="gzip")
    np.testing.assert_array_equal(zipped.as_numpy("predict"), pipeline.predict(frame))


def _age_as_text(module: Any, frame: pd.DataFrame) -> list[Any]:
    """A request that sends the numeric feature age as strings: the client's mistake."""
    wrong = _inputs(module, frame)
    wrong[0] = module.InferInput("age", [len(frame), 1], "BYTES")
    wrong[0].set_data_from_numpy(frame[["age"]].to_numpy().astype(str).astype(object))
    return wrong


def test_triton_http_client_mistakes_are_4xx(server: Server) -> None:
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http}")
    frame = _rows()
    with pytest.raises(InferenceServerException) as refused:
        client.infer("credit", _age_as_text(httpclient, frame))
    assert refused.value.status() == "422"
    assert "numeric" in refused.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", _inputs(httpclient, frame))
    assert unknown.value.status() == "404"


def test_triton_grpc_client(server: Server, model: Any) -> None:
    _, pipeline, _ = model
    frame = _rows()
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("credit")
    assert not client.is_model_ready("credit", model_version="9")
    meta = client.get_model_metadata("credit", as_json=True)
    assert meta["versions"] == ["4"]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "prediction_id", "predict_proba"]

    result = client.infer("credit", _inputs(grpcclient, frame), request_id="r-7")
    np.testing.assert_array_equal(result.as_numpy("predict"), pipeline.predict(frame))
    assert result.get_response().id == "r-7"
    wanted = [grpcclient.InferRequestedOutput("predict_proba")]
    proba = client.infer("credit", _inputs(grpcclient, frame), outputs=wanted).as_numpy("predict_proba")
    np.testing.assert_allclose(proba, pipeline.predict_proba(frame), rtol=0, atol=1e-12)


def test_triton_grpc_client_mistakes_are_invalid_argument(server: Server) -> None:
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc}")
    frame = _rows()
    with pytest.raises(InferenceServerException) as refused:
        client.infer("credit", _age_as_text(grpcclient, frame))
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "numeric" in refused.value.message()
    missing = _inputs(grpcclient, frame)[:2]
    with pytest.raises(InferenceServerException) as lacking:
        client.infer("credit", missing)
    assert lacking.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("other", _inputs(grpcclient, frame))
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as config:
        client.get_model_config("credit")
    assert config.value.status() == "StatusCode.UNIMPLEMENTED"


def test_grpc_requests_count_in_the_same_metrics(server: Server) -> None:
    def count(code: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{server.http}/metrics").text
        prefix = f'loopwright_predictor_requests_total{{model="credit",version="4",code="{code}"}} '
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    before_ok, before_bad = count("200"), count("422")
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc}")
    client.infer("credit", _inputs(grpcclient, _rows()))
    with pytest.raises(InferenceServerException):
        client.infer("credit", _age_as_text(grpcclient, _rows()))
    assert count("200") == before_ok + 1
    assert count("422") == before_bad + 1
    text = httpx.get(f"http://127.0.0.1:{server.http}/metrics").text
    assert 'loopwright_predictor_model_info{model="credit",version="4",form="compiled"} 1' in text


def test_serving_a_compiled_model_imports_no_scikit_learn_scipy_or_pandas(
    model: tuple[dict[str, str], Any, Path],
) -> None:
    env, _, tmp = model
    compiled = _start(env, tmp, "modules-compiled")
    r = httpx.post(f"http://127.0.0.1:{compiled.http}/v1/models/credit:predict",
                   json={"instances": [{"age": 40, "score": None, "region": "mars"}]})
    assert r.status_code == 200, r.text
    assert not compiled.stop() & set(FORBIDDEN), compiled.log.read_text()
    # The same check on the skops model finds them: the test can tell the difference.
    skops_env = {k: v for k, v in env.items() if not k.startswith("LOOPWRIGHT_COMPILED")}
    skops = _start(skops_env, tmp, "modules-skops")
    assert set(FORBIDDEN) <= skops.stop()


def test_a_corrupt_compiled_artifact_refuses_to_serve_with_the_reason(
    model: tuple[dict[str, str], Any, Path], tmp_path: Path
) -> None:
    env, _, tmp = model
    corrupt = tmp_path / "model.lwc"
    corrupt.write_bytes((tmp / "model.lwc").read_bytes()[:-16])
    reason = tmp_path / "termination-log"
    http, grpc = _port(), _port()
    full = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(http), "GRPC_PORT": str(grpc),
            "LOOPWRIGHT_COMPILED_URI": str(corrupt), "LOOPWRIGHT_TERMINATION_LOG": str(reason)}
    proc = subprocess.run([sys.executable, "-m", "loopwright.serving"], env=full, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 1
    message = reason.read_text()
    assert message.startswith(f"cannot serve the model: compiled model {corrupt}: sha256 is ")
    assert env["LOOPWRIGHT_COMPILED_SHA256"] in message
