"""The predictor as a process: loading from URIs with sha256, readiness, SIGTERM drain, capture."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from moto.server import ThreadedMotoServer
from sklearn.linear_model import LogisticRegression

from loopwright import artifacts, storage
from loopwright.serving import model
from loopwright.serving.app import PredictorApp
from loopwright.serving.settings import Settings, SettingsError
from unit.test_predictor import NAMES, ROWS, _data, _profile, _schema, _served, _v2_named

pytestmark = pytest.mark.slow


@pytest.fixture
def artifacts_dir(tmp_path: Path) -> dict[str, str]:
    x, y = _data()
    est = LogisticRegression().fit(x, y)
    model_sha = artifacts.save(est, str(tmp_path / "model.skops"))
    profile = _profile(_schema(), x, est.predict(x), classes=["0", "1"])
    (tmp_path / "profile.json").write_text(json.dumps(profile.to_wire()))
    return {
        "LOOPWRIGHT_MODEL_NAME": "credit",
        "LOOPWRIGHT_MODEL_VERSION": "7",
        "LOOPWRIGHT_MODEL_URI": str(tmp_path / "model.skops"),
        "LOOPWRIGHT_MODEL_SHA256": model_sha,
        "LOOPWRIGHT_PROFILE_URI": f"file://{tmp_path / 'profile.json'}",
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _spawn(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _port()
    log = tmp_path / f"predictor-{port}.log"
    full = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loopwright.serving"], env=full, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, f"http://127.0.0.1:{port}", log


@pytest.fixture
def kill_later() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def _wait(
    url: str, proc: subprocess.Popen[bytes], log: Path, *, status: int = 200, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}:\n{log.read_text()}")


def test_serves_then_drains_on_sigterm_and_exits_zero(
    artifacts_dir: dict[str, str], tmp_path: Path, kill_later: list[Any]
) -> None:
    proc, base, log = _spawn({**artifacts_dir, "LOOPWRIGHT_DRAIN_SECONDS": "2"}, tmp_path)
    kill_later.append(proc)
    _wait(f"{base}/v2/health/live", proc, log)
    _wait(f"{base}/v2/health/ready", proc, log)
    r = httpx.post(f"{base}/v2/models/credit/infer", json=_v2_named(ROWS))
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "7"
    with httpx.Client(base_url=base) as client:  # one keep-alive connection throughout
        big = client.post("/v2/models/credit/infer", content=b"[" + b"1," * 600_000 + b"1]")
        assert big.status_code == 413
        assert client.post("/v2/models/credit/infer", json=_v2_named(ROWS)).status_code == 200

    proc.send_signal(signal.SIGTERM)
    # During the drain new requests are still answered (endpoints are removed asynchronously),
    # each on a connection closed after the answer so that clients move to a ready replica.
    def closing() -> bool:
        during = httpx.post(f"{base}/v2/models/credit/infer", json=_v2_named(ROWS))
        assert during.status_code == 200
        return during.headers.get("connection") == "close"

    deadline = time.monotonic() + 2
    while not closing():
        assert time.monotonic() < deadline, "no drain after SIGTERM"
        time.sleep(0.05)
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200  # still ready: see __main__
    assert proc.wait(timeout=20) == 0, log.read_text()


def test_wrong_sha256_exits_1(artifacts_dir: dict[str, str], tmp_path: Path, kill_later: list[Any]) -> None:
    proc, _, log = _spawn({**artifacts_dir, "LOOPWRIGHT_MODEL_SHA256": "0" * 64}, tmp_path)
    kill_later.append(proc)
    assert proc.wait(timeout=60) == 1
    assert "sha256" in log.read_text()


def test_missing_settings_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWRIGHT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "loopwright.serving"], env=env, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert b"LOOPWRIGHT_MODEL_URI" in proc.stderr


def test_settings_are_validated() -> None:
    base = {
        "LOOPWRIGHT_MODEL_NAME": "m",
        "LOOPWRIGHT_MODEL_URI": "s3://b/k",
        "LOOPWRIGHT_MODEL_SHA256": "ab",
        "LOOPWRIGHT_PROFILE_URI": "s3://b/p",
    }
    s = Settings.from_env(base)
    assert (s.port, s.max_body_bytes, s.capture_fraction) == (8080, 1 << 20, 0.0)
    with pytest.raises(SettingsError, match="CAPTURE_FRACTION"):
        Settings.from_env({**base, "LOOPWRIGHT_CAPTURE_FRACTION": "1.5"})
    with pytest.raises(SettingsError, match="invalid"):
        Settings.from_env({**base, "PORT": "http"})


def test_the_feedback_token_comes_from_a_file(tmp_path: Path) -> None:
    base = {"LOOPWRIGHT_MODEL_NAME": "m", "LOOPWRIGHT_MODEL_URI": "s3://b/m", "LOOPWRIGHT_MODEL_SHA256": "x",
            "LOOPWRIGHT_PROFILE_URI": "s3://b/p"}
    assert Settings.from_env(base).feedback_token is None
    token = tmp_path / "token"
    token.write_text("a-long-enough-token\n")
    settings = Settings.from_env({**base, "LOOPWRIGHT_FEEDBACK_TOKEN_FILE": str(token)})
    assert settings.feedback_token == "a-long-enough-token"
    assert "a-long-enough-token" not in repr(settings)
    token.write_text("short")
    with pytest.raises(SettingsError, match="16 characters"):
        Settings.from_env({**base, "LOOPWRIGHT_FEEDBACK_TOKEN_FILE": str(token)})
    with pytest.raises(SettingsError, match="FEEDBACK_TOKEN_FILE"):
        Settings.from_env({**base, "LOOPWRIGHT_FEEDBACK_TOKEN_FILE": str(tmp_path / "absent")})


@pytest.mark.anyio
async def test_capture_writes_predictions_and_labels(tmp_path: Path) -> None:
    settings = Settings(
        model_name="credit",
        model_uri="unused",
        model_sha256="unused",
        profile_uri="unused",
        capture_uri=str(tmp_path / "captures"),
        capture_fraction=1.0,
        pod_name="pod-a",
        feedback_token="feedback-token-0123456789",
    )
    app = PredictorApp(settings=settings)
    app.plane.install(_served(LogisticRegression()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as c:
        instances = [dict(zip(NAMES, r, strict=True)) for r in ROWS]
        r = await c.post("/v1/models/credit:predict", json={"instances": instances})
        ids = r.json()["ids"]
        sent = await c.post("/v1/models/credit/feedback", json={"labels": [{"id": ids[1], "label": 1}]},
                            headers={"authorization": "Bearer feedback-token-0123456789"})
        assert sent.status_code == 200, sent.text
    await app.plane.shutdown()
    files = sorted((tmp_path / "captures" / "pod-a").iterdir())
    rows = [
        orjson.loads(line)
        for f in files
        if not f.name.endswith(".labels.jsonl")
        for line in f.read_bytes().split()
    ]
    labels = [
        orjson.loads(line)
        for f in files
        if f.name.endswith(".labels.jsonl")
        for line in f.read_bytes().split()
    ]
    assert [row["id"] for row in rows] == ids
    assert rows[0]["features"] == instances[0]
    assert [row["prediction"] for row in rows] == r.json()["predictions"]
    assert [(lab["id"], lab["label"]) for lab in labels] == [(ids[1], 1)]
    assert all(isinstance(row["ts"], int) for row in rows)


@pytest.mark.anyio
async def test_capture_rows_lost_to_a_failed_write_are_counted_on_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(model_name="credit", model_uri="unused", model_sha256="unused", profile_uri="unused",
                        capture_uri=str(tmp_path / "captures"), capture_fraction=1.0, pod_name="pod-a")
    app = PredictorApp(settings=settings)
    app.plane.install(_served(LogisticRegression()))

    def s3_down(uri: str, data: bytes, **_: Any) -> str:
        raise storage.StorageError(f"cannot write {uri}: Could not connect to the endpoint URL")

    monkeypatch.setattr(storage, "put_bytes", s3_down)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
        instances = [dict(zip(NAMES, r, strict=True)) for r in ROWS]
        r = await c.post("/v1/models/credit:predict", json={"instances": instances})
        assert r.status_code == 200  # serving is not capture's hostage
        assert app.plane.served is not None
        assert app.plane.served.capture is not None
        await app.plane.served.capture.flush()
        metrics = (await c.get("/metrics")).text
    await app.plane.shutdown()
    assert f'reason="writeFailed"}} {len(ROWS)}' in metrics
    assert 'reason="bufferFull"} 0' in metrics


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_loads_from_s3_and_flushes_captures_on_shutdown(
    s3_endpoint: str, tmp_path: Path, kill_later: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    for k, v in aws.items():
        monkeypatch.setenv(k, v)
    storage.client().create_bucket(Bucket="loopwright")
    x, y = _data()
    est = LogisticRegression().fit(x, y)
    prefix = "s3://loopwright/models/ns/credit/runs/r1"
    model_sha = artifacts.save(est, f"{prefix}/model.skops")
    profile = _profile(_schema(), x, est.predict(x), classes=["0", "1"])
    profile_sha = storage.put_bytes(f"{prefix}/profile.json", json.dumps(profile.to_wire()).encode())
    env = {
        **aws,
        "LOOPWRIGHT_MODEL_NAME": "credit",
        "LOOPWRIGHT_MODEL_VERSION": "1",
        "LOOPWRIGHT_MODEL_URI": f"{prefix}/model.skops",
        "LOOPWRIGHT_MODEL_SHA256": model_sha,
        "LOOPWRIGHT_PROFILE_URI": f"{prefix}/profile.json",
        "LOOPWRIGHT_PROFILE_SHA256": profile_sha,
        "LOOPWRIGHT_CAPTURE_URI": "s3://loopwright/captures/ns/credit",
        "LOOPWRIGHT_CAPTURE_FRACTION": "1",
        "LOOPWRIGHT_DRAIN_SECONDS": "0",
        "POD_NAME": "credit-stable-abc",
    }
    proc, base, log = _spawn(env, tmp_path)
    kill_later.append(proc)
    _wait(f"{base}/v2/health/ready", proc, log)
    r = httpx.post(f"{base}/v1/models/credit:predict", json={"instances": [list(ROWS[0]), list(ROWS[1])]})
    assert r.status_code == 200, r.text
    ids = r.json()["ids"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()
    objects = storage.list_objects("s3://loopwright/captures/ns/credit/credit-stable-abc/")
    assert len(objects) == 1, log.read_text()
    lines = [orjson.loads(line) for line in storage.get_bytes(objects[0].uri).splitlines()]
    assert [line["id"] for line in lines] == ids
    assert lines[0]["features"] == dict(zip(NAMES, ROWS[0], strict=True))



def test_a_profile_with_a_nan_edge_is_refused_in_one_line(artifacts_dir: dict[str, str],
                                                          tmp_path: Path) -> None:
    profile = json.loads((tmp_path / "profile.json").read_text())
    feature = next(f for f in profile["features"].values() if f["kind"] == "numeric")
    feature["edges"][0] = math.nan
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(profile))
    with pytest.raises(model.ModelLoadError) as refused:
        model.load(model_uri=artifacts_dir["LOOPWRIGHT_MODEL_URI"],
                   model_sha256=artifacts_dir["LOOPWRIGHT_MODEL_SHA256"], profile_uri=str(hostile),
                   profile_sha256=None)
    assert "\n" not in str(refused.value)  # the termination message's last line is the reason
    assert "edges must be finite numbers" in str(refused.value)
