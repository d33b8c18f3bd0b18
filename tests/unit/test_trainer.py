import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from loopwright import artifacts, termination
from loopwright.api.schema import DatasetSchema, TaskType
from loopwright.compiled import rows
from loopwright.compiled.agreement import compare
from loopwright.compiled.program import Program
from loopwright.core.profile import Profile
from loopwright.jobs import contract as _job
from loopwright.jobs.data import TEXT
from loopwright.jobs.trainer import scores as metrics
from loopwright.jobs.trainer.__main__ import main
from loopwright.jobs.trainer.model import labelled as _labelled
from loopwright.jobs.trainer.model import split as _split

CLS_SCHEMA = {
    "label": {"name": "y", "task": "classification"},
    "columns": [
        {"name": "a", "type": "numeric"},
        {"name": "b", "type": "numeric", "nullable": True},
        {"name": "c", "type": "categorical"},
    ],
}
REG_SCHEMA = {**CLS_SCHEMA, "label": {"name": "y", "task": "regression"}}


def _write(path, n=300, *, classes=2, regression=False, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.uniform(0, 10, size=n)
    c = rng.choice(["x", "y", "z"], size=n)
    score = a + 0.3 * b + (c == "x") + rng.normal(scale=0.3, size=n)
    y = score if regression else np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    lines = ["a,b,c,y"] + [
        f"{a[i]:.5f},{'' if i % 25 == 0 else f'{b[i]:.4f}'},{c[i]},{y[i]}" for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(tmp_path, *, schema=CLS_SCHEMA, estimator="LogisticRegression", params=None, digest=None,
           extra=(), data="d.csv"):
    src = tmp_path / data
    out = tmp_path / "run"
    code = main([
        "--dataset-uri", str(src), "--dataset-digest", digest or hashlib.sha256(src.read_bytes()).hexdigest(),
        "--schema-json", json.dumps(schema), "--estimator", estimator,
        "--params-json", json.dumps(params or {}), "--seed", "7", "--output-prefix", f"{out}/", *extra,
    ])
    return code, out


@pytest.fixture(autouse=True)
def termination_log(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    monkeypatch.setenv(termination.ENV, str(path))
    return path


def _summary(termination_log):
    return json.loads(termination_log.read_text())


def test_binary_classification_writes_verified_outputs(tmp_path, termination_log):
    digest = _write(tmp_path / "d.csv")
    code, out = _train(tmp_path, digest=f"sha256:{digest}")
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    for name, file in [("model", "model.skops"), ("metrics", "metrics.json"), ("profile", "profile.json"),
                       ("report", "report.html"), ("reportData", "report.json")]:
        assert result["artifacts"][name]["sha256"] == hashlib.sha256((out / file).read_bytes()).hexdigest()
    assert result["dataset"]["digest"] == f"sha256:{digest}"
    assert result["rows"] == {"total": 300, "train": 240, "test": 60, "droppedUnlabelled": 0}
    assert result["stratified"] is True
    assert result["seed"] == 7
    assert set(result["versions"]) >= {"python", "sklearn", "skops", "numpy"}
    assert set(result["metrics"]) == set(metrics.CLASSIFICATION)
    assert result["metrics"]["accuracy"] > 0.8
    assert json.loads((out / "metrics.json").read_text()) == result["metrics"]
    phases = {"read", "split", "fit", "evaluate", "profile", "report", "serialise", "compile", "write"}
    assert set(result["seconds"]) == {*phases, "total"}
    assert set(result["cpuSeconds"]) == {*phases, "skopsImport", "total"}
    assert result["cpuSeconds"]["total"] >= result["cpuSeconds"]["fit"] > 0
    assert result["fitSeconds"] == result["seconds"]["fit"]

    model = artifacts.load(str(out / "model.skops"), sha256=result["artifacts"]["model"]["sha256"])
    assert model.named_steps["model"].random_state == 7
    pred = model.predict(pd.DataFrame({"a": [-3.0, 3.0], "b": [np.nan, 9.0], "c": ["never-seen", "x"]}))
    assert list(pred) == ["0", "1"]

    profile = Profile.model_validate_json((out / "profile.json").read_bytes())
    assert profile.rows == 240
    assert profile.classes == ["0", "1"]
    assert profile.prediction.categories == ["0", "1"]
    assert sum(profile.prediction.counts) == 60
    assert profile.features["b"].missing > 0
    assert profile.features["c"].categories == ["x", "y", "z"]
    assert profile.dataset_schema.label.task == "classification"
    summary = _summary(termination_log)
    assert summary["phase"] == "Succeeded"
    assert summary["modelSha256"] == result["artifacts"]["model"]["sha256"]

    # The compiled form and the hold-out rows it is verified on, each with its sha256.
    assert result["notCompiledReason"] is None
    compiled, holdout = result["artifacts"]["compiled"], result["artifacts"]["holdout"]
    assert summary["compiledSha256"] == compiled["sha256"]
    program = Program.loads((out / "model.lwc").read_bytes(), sha256=compiled["sha256"])
    held = rows.loads((out / "holdout.lwr").read_bytes(), sha256=holdout["sha256"])
    assert held.count == 60
    assert held.columns == ("a", "b", "c")
    assert held.numeric_names == ("a", "b")
    assert np.isnan(held.numeric).any()
    program.bind(held.numeric_names, ["c"])
    agreement = compare(program, model, columns=held.columns, numeric_names=held.numeric_names,
                        numeric=held.numeric, categorical=held.categorical)
    assert agreement.passed, agreement.describe()


def test_same_seed_same_model(tmp_path):
    _write(tmp_path / "d.csv")
    _, out = _train(tmp_path, estimator="RandomForestClassifier", params={"n_estimators": 5})
    first = json.loads((out / "result.json").read_text())
    _, out = _train(tmp_path, estimator="RandomForestClassifier", params={"n_estimators": 5})
    second = json.loads((out / "result.json").read_text())
    assert first["metrics"] == second["metrics"]
    assert first["artifacts"]["profile"]["sha256"] == second["artifacts"]["profile"]["sha256"]


def test_multiclass_metrics_and_primary(tmp_path):
    _write(tmp_path / "d.csv", classes=3)
    code, out = _train(tmp_path, estimator="HistGradientBoostingClassifier", params={"max_iter": 20},
                       extra=["--metrics", "f1_macro,accuracy,roc_auc"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["primaryMetric"] == "f1_macro"
    assert set(result["metrics"]) == {"f1_macro", "accuracy", "roc_auc"}
    assert result["classes"] == ["0", "1", "2"]


def test_regression(tmp_path):
    _write(tmp_path / "d.csv", regression=True)
    code, out = _train(tmp_path, schema=REG_SCHEMA, estimator="Ridge", params={"alpha": 0.5})
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert set(result["metrics"]) == {"r2", "rmse", "mae"}
    assert result["metrics"]["r2"] > 0.8
    assert result["stratified"] is False
    profile = Profile.model_validate_json((out / "profile.json").read_bytes())
    assert profile.prediction.kind == "numeric"
    assert profile.classes is None


def test_digest_mismatch_refuses_to_train(tmp_path, termination_log):
    _write(tmp_path / "d.csv")
    code, out = _train(tmp_path, digest="0" * 64)
    assert code == _job.EXIT_BAD_DATA
    assert _summary(termination_log)["error"] == "DigestMismatch"
    assert not out.exists()


@pytest.mark.parametrize(
    ("estimator", "params", "extra", "fragment"),
    [
        ("SVC", {}, (), "not allowed"),
        ("LogisticRegression", {"C": -1}, (), "'C' must be"),
        ("RandomForestRegressor", {}, (), "regression estimator"),
        ("LogisticRegression", {}, ("--metrics", "rmse"), "does not apply"),
        ("LogisticRegression", {"solver": "liblinear", "l1_ratio": 0.5}, (), "solver"),
    ],
)
def test_bad_parameters_exit_2(tmp_path, termination_log, estimator, params, extra, fragment):
    _write(tmp_path / "d.csv")
    code, _ = _train(tmp_path, estimator=estimator, params=params, extra=extra)
    assert code == _job.EXIT_BAD_PARAMETERS
    summary = _summary(termination_log)
    assert summary["error"] == "BadParameters"
    assert fragment in summary["message"]


def test_missing_column_is_bad_data(tmp_path, termination_log):
    (tmp_path / "d.csv").write_text("a,c,y\n1,x,0\n2,y,1\n")
    code, _ = _train(tmp_path)
    assert code == _job.EXIT_BAD_DATA
    assert "b" in _summary(termination_log)["message"]


def test_stratify_falls_back_when_impossible(tmp_path):
    rows = ["a,b,c,y"] + [f"{i},{i},x,{0 if i else 1}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    code, out = _train(tmp_path)
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["stratified"] is False
    assert "fewer than 2" in result["notStratifiedReason"]


def test_unlabelled_rows_are_dropped(tmp_path):
    _write(tmp_path / "d.csv", regression=True)
    text = (tmp_path / "d.csv").read_text().splitlines()
    text[1] = text[1].rsplit(",", 1)[0] + ","
    (tmp_path / "d.csv").write_text("\n".join(text) + "\n")
    code, out = _train(tmp_path, schema=REG_SCHEMA, estimator="LinearRegression")
    assert code == 0
    assert json.loads((out / "result.json").read_text())["rows"]["droppedUnlabelled"] == 1


def test_metrics_conventions():
    y_true = np.array(["0", "1", "1", "0"], dtype=object)
    y_pred = np.array(["0", "1", "0", "0"], dtype=object)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    ev = metrics.evaluate("classification", ["precision", "recall", "roc_auc", "log_loss"],
                          y_true=y_true, y_pred=y_pred, proba=proba, classes=["0", "1"])
    assert ev.values["precision"] == 1.0
    assert ev.values["recall"] == 0.5
    assert ev.values["roc_auc"] == 1.0
    ev = metrics.evaluate("classification", ["roc_auc"], y_true=y_true, y_pred=y_pred, proba=None,
                          classes=["0", "1"])
    assert "probabilities" in ev.skipped["roc_auc"]
    ev = metrics.evaluate("regression", ["rmse", "mae"], y_true=np.array([0.0, 2.0]),
                          y_pred=np.array([1.0, 1.0]))
    assert ev.values == {"rmse": 1.0, "mae": 1.0}


def test_stratified_split_on_class_codes_equals_split_on_labels():
    """The trainer stratifies on integer class codes; the split must be the one the labels give."""
    rng = np.random.default_rng(3)
    labels = rng.choice(["b", "a", "10", "9", "c"], size=997, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    frame = pd.DataFrame({"a": rng.normal(size=997), "b": rng.normal(size=997), "c": "x",
                          "y": pd.Series(labels, dtype=TEXT)})
    x, y, codes, dropped = _labelled(frame, DatasetSchema.model_validate(CLS_SCHEMA), TaskType.CLASSIFICATION)
    assert dropped == 0
    assert sorted(set(codes)) == [0, 1, 2, 3, 4]
    assert [y[codes == k][0] for k in range(5)] == ["10", "9", "a", "b", "c"]
    x_train, x_test, y_train, y_test, reason = _split(
        x, y, codes=codes, test_fraction=0.2, seed=5, stratify=True)
    expected = train_test_split(x, y, test_size=0.2, random_state=5, stratify=y)
    assert reason is None
    assert x_train.index.equals(expected[0].index)
    assert x_test.index.equals(expected[1].index)
    assert y_train.tolist() == expected[2].tolist()
    assert y_test.tolist() == expected[3].tolist()


def test_a_run_on_local_files_never_loads_the_aws_sdk(tmp_path):
    """boto3 is imported on the first S3 access only (a quarter of the trainer's extra imports)."""
    digest = _write(tmp_path / "d.csv")
    code = (
        "import sys\n"
        "from loopwright.jobs.trainer.__main__ import main\n"
        f"main(['--dataset-uri', {str(tmp_path / 'd.csv')!r}, '--dataset-digest', {digest!r},\n"
        f"      '--schema-json', {json.dumps(CLS_SCHEMA)!r}, '--estimator', 'LogisticRegression',\n"
        f"      '--output-prefix', {str(tmp_path / 'run')!r}])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 's3transfer')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert '"phase":"Succeeded"' in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_each_run_writes_a_report_with_its_gate_decision(tmp_path, termination_log):
    digest = _write(tmp_path / "d.csv")
    gates_json = json.dumps({
        "model": "churn",
        "validation": {"thresholds": [{"metric": "accuracy", "min": 0.5}], "champion": {"margin": 0.0}},
        "champion": {"name": "churn-v1", "version": 1, "metrics": {"accuracy": 0.99}},
    })
    code, out = _train(tmp_path, digest=f"sha256:{digest}", extra=["--gates-json", gates_json])
    assert code == 0
    data = json.loads((out / "report.json").read_text())
    assert data["kind"] == "TrainingReport"
    assert data["run"] == out.name
    assert data["confusionMatrix"]["classes"] == ["0", "1"]
    assert sum(map(sum, data["confusionMatrix"]["matrix"])) == 60  # the hold-out
    assert [c["name"] for c in data["gate"]["checks"]] == ["min:accuracy", "champion"]
    assert data["gate"]["decision"] == "Reject"  # the champion's 0.99 is out of reach
    assert data["gate"]["champion"]["metrics"] == {"accuracy": 0.99}
    assert {f["name"] for f in data["features"]} == {"a", "b", "c"}
    page = (out / "report.html").read_text()
    assert "Rejected by its gates: 1 of 2 checks failed" in page
    assert "<script" not in page
    assert _summary(termination_log)["reportUri"].endswith("report.html")


def test_a_regressor_reports_its_residuals(tmp_path):
    _write(tmp_path / "d.csv", regression=True)
    code, out = _train(tmp_path, schema=REG_SCHEMA, estimator="Ridge")
    assert code == 0
    data = json.loads((out / "report.json").read_text())
    assert data["confusionMatrix"] is None
    assert data["residuals"]["count"] == 60
    assert sum(data["residuals"]["counts"]) == 60
    assert data["gate"]["decision"] is None  # no gates given: the ModelVersion's status decides
    assert "Residuals (actual minus predicted, hold-out)" in (out / "report.html").read_text()


def test_unreadable_gates_are_refused_before_any_fit(tmp_path, termination_log):
    digest = _write(tmp_path / "d.csv")
    code, _ = _train(tmp_path, digest=f"sha256:{digest}", extra=["--gates-json", "{not json"])
    assert code == _job.EXIT_BAD_PARAMETERS
    assert "--gates-json" in _summary(termination_log)["message"]
