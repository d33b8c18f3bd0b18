"""The plugin end to end against a fake API server: output, writes, watch, and one-line errors."""

from __future__ import annotations

import copy
import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from loopwright.api import names
from loopwright.api.kinds import ALL_KINDS
from loopwright.cli import commands, kubeapi, kubeconfig
from loopwright.cli.__main__ import main
from loopwright.cli.style import Style
from loopwright.cli.watch import fit_height, follow
from unit.cli_objects import NAMESPACE, NOW, objects
from unit.fake_kube import FakeKube


@pytest.fixture
def kube(tmp_path, monkeypatch):
    fake = FakeKube(objects(), namespace=NAMESPACE)
    with fake.running():
        monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.setenv("NO_COLOR", "1")
        yield fake


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_recorded_objects_are_what_the_api_models_accept():
    by_kind = {k.kind: k for k in ALL_KINDS}
    for items in objects().values():
        for obj in items:
            if obj["metadata"]["name"] == "fraud":
                continue
            kind = by_kind[obj["kind"]]
            kind.spec.model_validate(obj["spec"])
            kind.status.model_validate(obj["status"])


def test_get_prints_the_header_and_the_tree(kube, capsys):
    code, out, err = run(capsys, "get", "churn")
    assert code == 0, err
    assert out.startswith("Model:         churn\nNamespace:     demo\n")
    assert "churn-v4" in out
    assert "DriftPolicy" in out
    assert "tenure_months" in out
    # Five lists, one per kind, with the user's token (checked by the fake server).
    assert sorted(p.split("/")[-1] for m, p, _ in kube.requests) == sorted(k.plural for k in names.LOOP)


def test_get_output_json_and_yaml_hold_the_objects_for_scripts(kube, capsys):
    code, out, _ = run(capsys, "get", "churn", "-o", "json")
    data = json.loads(out)
    assert code == 0
    assert [v["metadata"]["name"] for v in data["modelVersions"]] == [
        "churn-v4",
        "churn-v3",
        "churn-v2",
        "churn-v1",
    ]
    assert [d["metadata"]["name"] for d in data["deployments"]] == ["churn"]  # not the fraud model's
    assert "managedFields" not in data["datasets"][0]["metadata"]
    code, out, _ = run(capsys, "versions", "churn", "-o", "yaml")
    assert yaml.safe_load(out)[0]["name"] == "churn-v4"


def test_an_unknown_model_names_the_models_there(kube, capsys):
    code, out, err = run(capsys, "get", "nope")
    assert (code, out) == (1, "")
    assert err == 'error: no model "nope" in namespace "demo" (models here: churn, fraud)\n'


def test_not_found_is_one_line_and_no_traceback(kube, capsys):
    for argv in (["lineage", "churn-v9"], ["drift", "nope"], ["promote", "nope"], ["train", "nope"]):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert out == ""
        assert err.count("\n") == 1
        assert "Traceback" not in err
        assert "not found" in err
    assert (
        run(capsys, "promote", "nope")[2]
        == 'error: deployments.loopwright.dev "nope" in namespace "demo" not found\n'
    )


def test_rbac_refusals_say_who_may_not_do_what(kube, capsys):
    kube.forbidden.add(("patch", "deployments"))
    code, out, err = run(capsys, "promote", "churn")
    assert code == 1
    assert out == ""
    assert err == (
        'error: forbidden by RBAC: deployments.loopwright.dev "churn" is forbidden: User "jane" cannot patch '
        'resource "deployments" in API group "loopwright.dev" in the namespace "demo"\n'
    )
    assert kube.store["deployments"]["churn"]["spec"]["rollout"].get("promote") is None
    kube.forbidden.add(("list", "driftpolicies"))
    code, _, err = run(capsys, "get", "churn")
    assert code == 1
    assert err.startswith("error: forbidden by RBAC: driftpolicies.loopwright.dev is forbidden")


def test_no_cluster_no_crds_and_bad_credentials_are_one_line(kube, capsys, tmp_path, monkeypatch):
    kube.crds_installed = False
    code, _, err = run(capsys, "get", "churn")
    assert code == 1
    assert "does not serve datasets.loopwright.dev" in err or "are Loopwright's CRDs installed?" in err
    kube.crds_installed = True
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "bad", token="wrong")))
    code, _, err = run(capsys, "versions", "churn")
    assert code == 1
    assert err == (
        "error: the API server did not accept the credentials of context test (401 Unauthorized): log in "
        "again or check the kubeconfig\n"
    )
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = yaml.safe_load((tmp_path / "bad").read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    (tmp_path / "down").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "down"))
    code, _, err = run(capsys, "get", "churn")
    assert code == 1
    assert err == (
        f"error: cannot reach the API server https://127.0.0.1:{port} (context test): connection refused "
        "(is the cluster running?)\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert run(capsys, "get", "churn")[2].startswith("error: no kubeconfig found")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["promote", "churn"], {"spec": {"rollout": {"promote": {"version": 4}}}}),
        (["abort", "churn", "--version", "4"], {"spec": {"rollout": {"abort": {"version": 4}}}}),
        (["pause", "churn"], {"spec": {"rollout": {"paused": True}}}),
        (["resume", "churn"], {"spec": {"rollout": {"paused": False}}}),
    ],
)
def test_rollout_actions_write_one_declarative_field_and_say_so(kube, capsys, argv, expected):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    patches = [(p, b) for m, p, b in kube.requests if m == "PATCH"]
    assert len(patches) == 1
    assert patches[0][1] == expected
    assert "fieldManager=kubectl-loopwright" in patches[0][0]
    assert out.splitlines()[0].startswith("deployment.loopwright.dev/churn patched: ")
    assert "  same as: kubectl -n demo patch mld churn --type merge -p " in out


def test_train_and_retrain_write_the_request_annotation(kube, capsys):
    code, out, _ = run(capsys, "train", "churn")
    assert code == 0
    annotations = kube.store["trainingpipelines"]["churn"]["metadata"]["annotations"]
    assert annotations["loopwright.dev/train-request"].startswith("kubectl-")
    assert annotations["loopwright.dev/train-trigger"] == "Manual"
    assert "note: churn is managed by Argo CD" in out
    assert "note: run churn-5 is in progress" in out
    code, out, _ = run(capsys, "retrain", "churn")
    assert code == 0
    assert "which trained churn-v3 in production" in out


def test_versions_lineage_and_drift_print_tables(kube, capsys):
    code, out, _ = run(capsys, "versions", "churn")
    assert code == 0
    assert out.splitlines()[0].split()[:5] == ["VERSION", "PHASE", "DATASET", "RUN", "TRIGGER"]
    code, out, _ = run(capsys, "lineage", "churn-v4")
    assert code == 0
    assert "serves it as canary" in out
    code, out, _ = run(capsys, "drift", "churn")
    assert code == 0
    assert "FEATURE" in out
    assert "LAST CHECKS" in out
    assert "CHECKED" in out


def test_logs_of_a_run_or_of_a_pipelines_latest_run(kube, capsys):
    pod = {
        "metadata": {
            "name": "churn-5-abcde",
            "labels": {"job-name": "churn-5"},
            "creationTimestamp": "2025-03-04T11:59:00Z",
        },
        "status": {"phase": "Running"},
    }
    kube.core["jobs"]["churn-5"] = {"metadata": {"name": "churn-5"}}
    kube.core["pods"]["churn-5-abcde"] = pod
    kube.logs["churn-5-abcde"] = "fitting RandomForestClassifier\n"
    assert run(capsys, "logs", "churn-5")[1] == "fitting RandomForestClassifier\n"
    assert run(capsys, "logs", "churn")[1] == "fitting RandomForestClassifier\n"  # the pipeline's last run
    code, _, err = run(capsys, "logs", "churn-4")
    assert code == 1
    assert "the Job of run churn-4 is gone" in err


def test_report_saves_what_the_status_points_at(kube, capsys, tmp_path):
    report = tmp_path / "20250304T115900Z.html"
    report.write_text("<html><title>drift</title></html>")
    (tmp_path / "20250304T115900Z.json").write_text('{"verdict": "drift"}')
    kube.store["driftpolicies"]["churn"]["status"]["reportUri"] = str(report)
    target = tmp_path / "out.html"
    code, out, err = run(capsys, "report", "dp/churn", "-f", str(target))
    assert code == 0, err
    assert target.read_text() == "<html><title>drift</title></html>"
    assert out.startswith("saved the drift report of the check at ")
    assert run(capsys, "report", "driftpolicy/churn", "--json", "-f", "-")[1] == '{"verdict": "drift"}'
    code, _, err = run(capsys, "report", "mv/churn-v4")
    assert code == 1
    assert err.startswith("error: cannot read s3://loopwright/models/demo/churn/runs/churn-4/report.html")
    assert run(capsys, "report", "churn")[2].startswith("error: report needs KIND/NAME")


def test_watch_redraws_when_an_object_changes(kube):
    changed = copy.deepcopy(kube.store["deployments"]["churn"])
    changed["status"]["canary"] |= {"step": 1, "desiredWeight": 50, "weight": 50}
    kube.watch_events["deployments"] = [{"type": "MODIFIED", "object": changed}]
    out = io.StringIO()
    ctx = commands.Context(
        connect=lambda: kubeapi.Api(kubeconfig.load()), style=Style(), out=out, clock=lambda: NOW
    )
    def render(objs):
        return commands.render_get(commands.model_loop(ctx, "churn", objs), ctx.style, NOW)

    thread = threading.Thread(target=follow, args=(ctx, render), kwargs={"frames": 2}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "canary churn-v4 at 10%" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    kube.release_watch.set()
    thread.join(10)
    pictures = out.getvalue().split("\n\nModel:")
    assert len(pictures) == 2
    assert "canary churn-v4 at 10%" in pictures[0]
    assert "canary churn-v4 at 50%" in pictures[1]


def test_the_console_script_starts_without_heavy_imports():
    """--help must not import the kubernetes package, pydantic or boto3 (start-up time)."""
    code = (
        "import sys; from loopwright.cli.__main__ import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('kubernetes', 'pydantic', 'boto3', 'numpy') if m in sys.modules]\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    code = code.replace("['--help']", "['get', 'x', '--kubeconfig', '/nonexistent']")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert Path(sys.executable).with_name("kubectl-loopwright").exists()


def test_a_watch_on_a_terminal_never_scrolls():
    lines = [f"line {i}" for i in range(10)]
    assert fit_height(lines, 20) == lines
    cut = fit_height(lines, 6)
    assert len(cut) == 5
    assert cut[-1] == "... 6 more lines: a taller terminal shows them"


def test_get_without_a_model_lists_the_models_of_the_namespace(kube, capsys):
    code, out, _ = run(capsys, "get")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["MODEL", "VERSIONS", "PRODUCTION", "ROLLOUT", "DRIFT", "LAST", "RUN"]
    churn = lines[1].split()
    assert churn[:5] == ["churn", "4", "churn-v3", "Progressing", "·"]
    assert "canary v4 10%" in lines[1]
    assert "Drift" in lines[1]
    assert "churn-5 · Running" in lines[1]
    assert lines[2].split()[:4] == ["fraud", "0", "-", "Pending"]
    code, out, _ = run(capsys, "get", "-o", "json")
    data = json.loads(out)
    assert [m["model"] for m in data] == ["churn", "fraud"]
    assert data[0]["driftPolicies"] == [{"name": "churn", "status": "Drift"}]
    assert data[0]["lastRun"]["name"] == "churn-5"
