"""Captured requests + feedback labels -> a new Dataset version (predictor capture format, data reader)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from loopwright import storage
from loopwright.api.dataset import DatasetValidation
from loopwright.jobs import compactor, data
from loopwright.serving.app import PredictorApp
from loopwright.serving.settings import Settings
from unit.test_predictor import BEARER, NAMES, TOKEN, _schema, _served


def _lines(*docs: object) -> list[bytes]:
    return [json.dumps(d).encode() for d in docs]


def test_join_keeps_labelled_rows_and_counts_the_rest():
    rows = [*_lines(
        {"id": "a-0", "ts": 1, "features": {"x": 1.0}, "prediction": 0},
        {"id": "a-1", "ts": 1, "features": {"x": 2.0}, "prediction": 1},
        {"id": "a-2", "ts": 1, "features": {"x": None}, "prediction": 1},
    ), b"not json", b"", b'{"id": 3}']
    labels = [*_lines({"id": "a-2", "ts": 2, "label": 0}, {"id": "a-0", "ts": 2, "label": 1},
                      {"id": "a-0", "ts": 3, "label": 0}, {"id": "b-9", "ts": 2, "label": 1}), b"[]"]
    joined = compactor.join(rows, labels)
    assert joined.rows == [{"features": {"x": 1.0}, "label": 1}, {"features": {"x": None}, "label": 0}]
    assert joined.unlabelled == 1
    assert joined.orphan_labels == 1  # b-9 was not captured
    assert joined.malformed == 3  # two bad row lines, one bad label line; blank lines are not counted


def test_csv_has_schema_order_and_empty_cells_for_missing():
    rows = [{"features": {"b": "x", "a": 1.5}, "label": "yes"}, {"features": {"a": None}, "label": True}]
    assert compactor.to_csv(rows, columns=["a", "b"], label="y") == b"a,b,y\n1.5,x,yes\n,,true\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_captured_traffic_becomes_a_valid_new_dataset_version(tmp_path: Path) -> None:
    served = _served(LogisticRegression())
    settings = Settings(model_name="credit", model_uri="unused", model_sha256="unused", profile_uri="unused",
                        capture_uri=str(tmp_path / "captures"), capture_fraction=1.0, pod_name="pod-a",
                        feedback_token=TOKEN)
    app = PredictorApp(settings=settings)
    app.plane.install(served)
    instances = [{"age": 20.0 + i, "income": 30_000.0 + 1000 * i, "score": i / 10} for i in range(12)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p",
                                 headers=BEARER) as c:
        r = await c.post("/v1/models/credit:predict", json={"instances": instances})
        assert r.status_code == 200, r.text
        ids = r.json()["ids"]
        labelled = {ids[i]: i // 2 % 2 for i in range(0, 12, 2)}  # every other row gets a label
        f = await c.post("/v1/models/credit/feedback",
                         json={"labels": [{"id": k, "label": v} for k, v in labelled.items()]})
        assert f.json()["matched"] == 6
    await app.plane.shutdown()  # flushes the capture buffers

    # The Dataset's source is a prefix that already holds version 1.
    dataset = tmp_path / "datasets" / "credit"
    dataset.mkdir(parents=True)
    (dataset / "v1.csv").write_text("age,income,score,y\n30,40000,0.5,1\n80,20000,-2,0\n")
    before = storage.fingerprint(str(dataset))

    columns, label = compactor.schema_columns(served.profile)
    assert (columns, label) == (list(NAMES), "y")
    result = compactor.compact(captures=str(tmp_path / "captures"), output=str(dataset / "captured-1.csv"),
                             columns=columns, label=label)
    assert result.objects == 2  # one rows object, one labels object
    assert len(result.joined.rows) == 6
    assert result.joined.unlabelled == 6
    assert result.sha256 == storage.sha256_hex((dataset / "captured-1.csv").read_bytes())
    assert storage.fingerprint(str(dataset)) != before  # the Dataset controller sees a change

    table = data.read_table(str(dataset), fmt="csv", schema=_schema())
    assert len(table.frame) == 2 + 6
    report = data.validate(table.frame, _schema(), DatasetValidation(min_rows=8))
    assert report.valid, report.anomalies
    got = sorted(zip(table.frame["age"].tolist(), table.frame["y"].astype(int).tolist(), strict=True))
    assert got == sorted([(20.0 + i, i // 2 % 2) for i in range(0, 12, 2)] + [(30.0, 1), (80.0, 0)])


def test_since_filter_and_nothing_to_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = tmp_path / "captures" / "pod-a"
    pod.mkdir(parents=True)
    (pod / "1000.jsonl").write_bytes(b'{"id": "a-0", "ts": 1000, "features": {"x": 1}, "prediction": 0}\n')
    (pod / "1000.labels.jsonl").write_bytes(b'{"id": "a-0", "ts": 1000, "label": 1}\n')
    # One flush holds a row from before the cut (ts 1200) and one after it (ts 1600, never labelled).
    (pod / "2000.jsonl").write_bytes(b'{"id": "a-1", "ts": 1600, "features": {"x": 2}, "prediction": 0}\n'
                                     b'{"id": "a-2", "ts": 1200, "features": {"x": 3}, "prediction": 0}\n')
    (pod / "2500.labels.jsonl").write_bytes(b'{"id": "a-2", "ts": 2500, "label": 0}\n')
    (pod / "notes.txt").write_text("ignored")
    out = tmp_path / "out.csv"
    base = ["--captures", str(tmp_path / "captures"), "--output", str(out), "--columns", "x", "--label", "y"]
    assert compactor.main([*base, "--since-ms", "1500"]) == 1  # only a-1, which has no label
    assert not out.exists()
    assert json.loads(capsys.readouterr().out)["unlabelled"] == 1
    assert compactor.main(base) == 0
    assert out.read_text() == "x,y\n1,1\n3,0\n"
    assert json.loads(capsys.readouterr().out) == {
        "output": str(out), "sha256": storage.sha256_hex(out.read_bytes()), "rows": 2, "unlabelled": 1,
        "orphanLabels": 0, "malformed": 0, "objects": 4}
