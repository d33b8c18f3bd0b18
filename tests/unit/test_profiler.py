import hashlib
import json

import pytest

from loopwright import termination
from loopwright.core.profile import Profile
from loopwright.jobs import contract as _job
from loopwright.jobs.profiler.__main__ import main

SCHEMA = json.dumps(
    {
        "label": {"name": "y", "task": "classification"},
        "columns": [{"name": "a", "type": "numeric", "max": 100}, {"name": "c", "type": "categorical"}],
    }
)


@pytest.fixture
def termination_log(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    monkeypatch.setenv(termination.ENV, str(path))
    return path


def _run(tmp_path, body: bytes, *extra):
    src = tmp_path / "data.csv"
    src.write_bytes(body)
    out = tmp_path / "out"
    code = main(["--source-uri", str(src), "--schema-json", SCHEMA, "--output-prefix", f"{out}/", *extra])
    return code, out


def test_valid_data_writes_profile_and_result(tmp_path, termination_log, capsys):
    body = b"a,c,y\n" + b"".join(f"{i},{'xy'[i % 2]},{i % 2}\n".encode() for i in range(50))
    code, out = _run(tmp_path, body)
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["valid"] is True
    assert result["rows"] == 50
    assert result["digest"].startswith("sha256:")
    profile_bytes = (out / "profile.json").read_bytes()
    assert result["profileSha256"] == hashlib.sha256(profile_bytes).hexdigest()
    profile = Profile.model_validate_json(profile_bytes)
    assert set(profile.features) == {"a", "c"}
    assert profile.label.categories == ["0", "1"]
    assert profile.classes == ["0", "1"]
    assert profile.dataset_schema.label.name == "y"
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["valid"] is True
    assert json.loads(termination_log.read_text()) == summary


def test_invalid_data_exits_zero_with_anomalies(tmp_path, termination_log):
    code, out = _run(tmp_path, b"a,c,y\n1,x,0\n500,y,1\n")
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["valid"] is False
    assert [a["kind"] for a in result["anomalies"]] == ["OutOfRange"]
    assert json.loads(termination_log.read_text())["anomalies"][0]["kind"] == "OutOfRange"


def test_unreadable_and_missing_sources_are_data_problems(tmp_path, termination_log):
    code = main(["--source-uri", str(tmp_path / "nope.csv"), "--schema-json", SCHEMA,
                 "--output-prefix", str(tmp_path / "o1")])
    assert code == 0
    assert json.loads((tmp_path / "o1" / "result.json").read_text())["anomalies"][0]["kind"] == "Unreadable"
    (tmp_path / "bad.parquet").write_bytes(b"garbage")
    code = main([
        "--source-uri", str(tmp_path / "bad.parquet"), "--format", "parquet",
        "--schema-json", SCHEMA, "--output-prefix", str(tmp_path / "o2"),
    ])
    result = json.loads((tmp_path / "o2" / "result.json").read_text())
    assert code == 0
    assert result["valid"] is False
    assert result["digest"].startswith("sha256:")
    assert result["profileUri"] is None


def test_a_version_over_max_bytes_is_a_too_large_anomaly_and_is_not_read(tmp_path, termination_log,
                                                                        monkeypatch):
    read = []
    monkeypatch.setattr("loopwright.storage.get_bytes", lambda uri, **_: read.append(uri))
    code, out = _run(tmp_path, b"a,c,y\n1,x,0\n2,y,1\n", "--max-bytes", "10")
    assert code == 0
    assert read == []
    result = json.loads((out / "result.json").read_text())
    assert result["valid"] is False
    ((anomaly),) = result["anomalies"]
    assert anomaly["kind"] == "TooLarge"
    assert "18 bytes in 1 object(s), more than the 10" in anomaly["message"]
    assert result["digest"] is None


def test_bad_schema_is_bad_parameters(tmp_path, termination_log):
    code = main(["--source-uri", "x", "--schema-json", "{}", "--output-prefix", str(tmp_path)])
    assert code == _job.EXIT_BAD_PARAMETERS
    assert json.loads(termination_log.read_text())["error"] == "BadParameters"


def test_storage_failure_is_nonzero(tmp_path, termination_log):
    (tmp_path / "d.csv").write_bytes(b"a,c,y\n1,x,0\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["--source-uri", str(tmp_path / "d.csv"), "--schema-json", SCHEMA,
                 "--output-prefix", str(blocker / "sub")])
    assert code == _job.EXIT_FAILED


def test_summary_is_capped_for_the_termination_message():
    summary = {"valid": False, "digest": "sha256:" + "0" * 64,
               "anomalies": [{"kind": "OutOfRange", "message": "m" * 500}] * 40}
    line = _job._fit(summary)
    assert len(line.encode()) <= 4096
    parsed = json.loads(line)
    assert parsed["anomaliesTruncated"] is True
    assert parsed["digest"] == summary["digest"]
