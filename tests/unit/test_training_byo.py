"""A team's own pipeline (manifests/samples/byo) and the search trials, without a cluster.

The sample's package is put on sys.path as its image puts it on PYTHONPATH: the trainer fits
the factory, refuses a model whose types are not declared, and the verifier and the predictor's
loader trust exactly the built-in list plus the declared types. The trial runner scores one
trial per index on a validation split of the training part.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from loopwright import artifacts, termination
from loopwright.api.deployment import DeploymentSpec
from loopwright.api.pipeline import TrainingPipelineSpec
from loopwright.api.schema import DatasetSchema
from loopwright.api.search import Search, SearchResult
from loopwright.core.training import registry, runs
from loopwright.core.training import search as plan
from loopwright.jobs.trainer.__main__ import main as trainer
from loopwright.jobs.trainer.trial import main as trial
from loopwright.jobs.verifier.__main__ import main as verifier
from loopwright.operator.builders import predictor
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import (
    JobSettings,
    RunInputs,
    search_job,
    training_job,
    verification_job,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "manifests" / "samples" / "byo"))
sys.path.insert(0, str(REPO / "tests" / "demo"))
import churn  # noqa: E402

FACTORY = "churn_features.model:make"
RATIOS = "churn_features.model.ChurnRatios"
SCHEMA = {"label": {"name": "churned", "task": "classification"}, "columns": [
    {"name": "tenure_months", "type": "numeric"}, {"name": "monthly_charges", "type": "numeric"},
    {"name": "support_calls", "type": "numeric"}, {"name": "plan", "type": "categorical"}]}
SEARCH = {"strategy": "random", "trials": 4, "seed": 1,
          "space": {"clf__C": {"min": 0.01, "max": 100.0, "log": True},
                    "ratios__offset": {"values": [0.5, 2.0]}}}


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv(termination.ENV, str(tmp_path / "termination-log"))
    path = tmp_path / "churn.csv"
    path.write_bytes(churn.csv_bytes(*churn.rows(1500, seed=3)))
    return ["--dataset-uri", str(path), "--dataset-digest", hashlib.sha256(path.read_bytes()).hexdigest(),
            "--schema-json", json.dumps(SCHEMA), "--factory", FACTORY, "--seed", "7"]


def _summary(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "termination-log").read_text()))


def test_the_factory_trains_and_its_model_loads_with_exactly_the_declared_types(
    data: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    searched = {"job": "p-1-search", "metric": "accuracy", "best": 0, "trials": [
        {"index": 0, "params": {"clf__max_iter": 300}, "phase": "Succeeded", "score": 0.8}]}
    assert trainer([*data, "--output-prefix", f"{out}/", "--trusted-type", RATIOS, "--params-json",
                    json.dumps({"clf__max_iter": 300}), "--search-json", json.dumps(searched)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["search"] == searched
    assert json.loads((out / "report.json").read_text())["search"] == searched
    assert "Hyperparameter search (1 trials, accuracy" in (out / "report.html").read_text()
    assert (result["factory"], result["trustedTypes"], result["estimator"]) == (FACTORY, [RATIOS], None)
    assert result["metrics"]["accuracy"] > 0.7
    model = result["artifacts"]["model"]
    assert verifier(["--uri", model["uri"], "--sha256", model["sha256"], "--trusted-type", RATIOS]) == 0
    # Without the declaration the verifier refuses it before loading anything of it.
    assert verifier(["--uri", model["uri"], "--sha256", model["sha256"]]) == 3
    assert _summary(tmp_path)["error"] == "UntrustedTypes"
    assert RATIOS in _summary(tmp_path)["message"]
    # The registry entry keeps the image the run ran and the declared types, for its verifier and
    # its predictors.
    spec = registry.spec_from_result(model="m", version=1, result=result, dataset="d", pipeline="p",
                                     run="p-1", image="example.com/churn-features:1")
    assert spec.image == "example.com/churn-features:1"
    assert spec.artifact.trusted_types == [RATIOS]
    assert spec.lineage is not None
    assert spec.lineage.factory == FACTORY


def test_a_model_with_undeclared_types_is_refused_at_training(data: list[str], tmp_path: Path) -> None:
    assert trainer([*data, "--output-prefix", f"{tmp_path / 'run'}/"]) == 2
    summary = _summary(tmp_path)
    assert summary["error"] == "UntrustedTypes"
    assert "spec.model.trustedTypes" in summary["message"]
    assert not (tmp_path / "run" / "result.json").exists()


def test_a_factory_missing_from_the_image_is_a_bad_parameter(data: list[str], tmp_path: Path) -> None:
    args = [*data, "--output-prefix", f"{tmp_path}/"]
    args[args.index(FACTORY)] = "no_such_team_module:make"
    assert trainer(args) == 2
    assert "is not in this image" in _summary(tmp_path)["message"]


def test_types_from_modules_that_run_code_are_never_trusted() -> None:
    assert artifacts.forbidden_types(["os.system", "builtins.eval", RATIOS]) == ["os.system",
                                                                                           "builtins.eval"]
    with pytest.raises(artifacts.UntrustedTypesError):
        artifacts.loads(b"", sha256=hashlib.sha256(b"").hexdigest(), extra=["builtins.eval"])
    spec = TrainingPipelineSpec.model_validate({"datasetRef": {"name": "d"}, "model": {
        "name": "m", "factory": FACTORY, "image": "example.com/x:1", "trustedTypes": ["subprocess.Popen"]}})
    assert runs.refusal(spec, task="classification") == [
        "trustedTypes: subprocess.Popen is never trusted (its module can run code or touch the system)"]


def test_each_trial_scores_its_own_parameters_on_the_validation_split(
    data: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    scores = []
    for index in range(4):
        assert trial([*data, "--search-json", json.dumps(SEARCH), "--index", str(index),
                      "--output-prefix", f"{out}/"]) == 0
        result = json.loads((out / "trials" / f"{index}.json").read_text())
        assert result["params"] == plan.trial_params(Search.model_validate(SEARCH), index)
        assert result["metric"] == "accuracy"
        scores.append(result["score"])
    assert all(0.5 < s <= 1.0 for s in scores)
    assert len(set(scores)) > 1


def test_a_failing_trial_leaves_a_failed_result(data: list[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {**SEARCH, "space": {"clf__no_such_param": {"values": [1]}}}
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert trial([*data, "--search-json", json.dumps(bad), "--output-prefix", f"{tmp_path}/"]) == 2
    result = json.loads((tmp_path / "trials" / "0.json").read_text())
    assert (result["phase"], result["error"]) == ("Failed", "BadParameters")
    assert plan.trial_from_result(0, {}, result).message


# -- manifests -------------------------------------------------------------------------------------

SETTINGS = JobSettings(image="loopwright/ml:0.1.0", s3_endpoint=None, credentials_secret="creds")
BYO = {"datasetRef": {"name": "d"}, "metrics": ["f1_macro"], "job": {"backoffLimit": 2},
       "model": {"name": "m", "factory": FACTORY, "image": "example.com/churn-features:1",
                 "trustedTypes": [RATIOS], "params": {"clf__max_iter": 300}},
       "search": {**SEARCH, "parallelism": 3}}


def _job(builder: Any, **kwargs: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = builder(RunInputs(
        namespace="ns", owner=Owner(kind="TrainingPipeline", name="p", uid="u", namespace="ns"),
        spec=TrainingPipelineSpec.model_validate(BYO), dataset_uri="s3://b/d.csv", dataset_format="csv",
        dataset_digest="sha256:" + "a" * 64, schema=DatasetSchema.model_validate(SCHEMA),
        credentials_secret=None, output_prefix="s3://b/runs/p-1", labels={"app": "x"}, settings=SETTINGS),
        **kwargs)
    return manifest


def _command(job: dict[str, Any]) -> list[str]:
    return list(job["spec"]["template"]["spec"]["containers"][0]["command"])


def test_the_search_job_is_one_indexed_job_whose_failed_trials_fail_alone() -> None:
    job = _job(search_job, name="p-1-search")
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 3)
    assert spec["backoffLimitPerIndex"] == 2
    assert "backoffLimit" not in spec
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailIndex"
    assert rules[0]["onExitCodes"]["values"] == [2, 3]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/churn-features:1"
    command = _command(job)
    assert command[0] == "loopwright-trial"
    assert json.loads(command[command.index("--search-json") + 1])["trials"] == 4
    assert command[command.index("--factory") + 1] == FACTORY


def test_the_training_job_trains_the_best_trial_in_the_teams_image() -> None:
    result = SearchResult(job="p-1-search", metric="f1_macro", best=1, trials=[
        {"index": 0, "params": {"clf__C": 0.1}, "phase": "Succeeded", "score": 0.7},  # type: ignore[list-item]
        {"index": 1, "params": {"clf__C": 3.0}, "phase": "Succeeded", "score": 0.8},  # type: ignore[list-item]
    ])
    job = _job(training_job, name="p-1", search=result)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/churn-features:1"
    command = _command(job)
    assert json.loads(command[command.index("--params-json") + 1]) == {"clf__max_iter": 300, "clf__C": 3.0}
    assert command[command.index("--trusted-type") + 1] == RATIOS
    assert json.loads(command[command.index("--search-json") + 1])["best"] == 1


def test_the_verifier_and_the_predictor_run_the_versions_image_and_trust_its_types() -> None:
    job = verification_job(namespace="ns", name="m-v1-verify", owner=Owner(kind="ModelVersion", name="m-v1",
                                                                          uid="u", namespace="ns"),
                           uri="s3://b/model.skops", sha256="0" * 64, labels={}, settings=SETTINGS,
                           trusted_types=[RATIOS], image="example.com/churn-features:1")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.com/churn-features:1"
    assert container["command"][-2:] == ["--trusted-type", RATIOS]
    plain = verification_job(namespace="ns", name="v", owner=Owner(kind="ModelVersion", name="v", uid="u",
                                                                  namespace="ns"),
                             uri="s3://b/model.skops", sha256="0" * 64, labels={}, settings=SETTINGS)
    assert plain["spec"]["template"]["spec"]["containers"][0]["image"] == SETTINGS.image
    served = predictor.Served(model="m", version=1, model_version="m-v1",
                              artifact_uri="s3://b/model.skops", artifact_sha256="0" * 64,
                              profile_uri="s3://b/profile.json", profile_sha256=None,
                              image="example.com/churn-features:1", trusted_types=(RATIOS,))
    deployment = predictor.deployment(
        owner=Owner(kind="Deployment", name="m", uid="u", namespace="ns"),
        spec=DeploymentSpec.model_validate({"model": "m"}), served=served, replicas=1,
        settings=predictor.PodSettings(image="loopwright/ml:0.1.0", s3_endpoint=None, credentials_secret=None,
                                       artifact_bucket="b"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.com/churn-features:1"
    assert {"name": "LOOPWRIGHT_TRUSTED_TYPES", "value": RATIOS} in container["env"]


def test_the_predictor_serves_the_factorys_model_with_its_declared_types(
    data: list[str], tmp_path: Path
) -> None:
    from loopwright.serving import model as served  # noqa: PLC0415
    from loopwright.serving.settings import Settings  # noqa: PLC0415

    out = tmp_path / "run"
    assert trainer([*data, "--output-prefix", f"{out}/", "--trusted-type", RATIOS]) == 0
    result = json.loads((out / "result.json").read_text())
    files = {name: result["artifacts"][name] for name in ("model", "profile")}
    env = {"LOOPWRIGHT_MODEL_NAME": "m", "LOOPWRIGHT_MODEL_URI": files["model"]["uri"],
           "LOOPWRIGHT_MODEL_SHA256": files["model"]["sha256"],
           "LOOPWRIGHT_PROFILE_URI": files["profile"]["uri"], "LOOPWRIGHT_TRUSTED_TYPES": RATIOS}
    settings = Settings.from_env(env)
    assert settings.trusted_types == (RATIOS,)
    loaded = served.load(model_uri=settings.model_uri, model_sha256=settings.model_sha256,
                         profile_uri=settings.profile_uri, profile_sha256=None,
                         trusted_types=settings.trusted_types)
    assert loaded.form == "skops"  # no compiled form for a team's own transformer
    records, _ = churn.rows(5, seed=9)
    prediction, proba = loaded.predict(loaded.decoder.decode_v1({"instances": records}), proba=True)
    assert set(prediction.labels.tolist()) <= {"yes", "no"}
    assert proba is not None
    with pytest.raises(served.ModelLoadError, match="untrusted types"):
        served.load(model_uri=settings.model_uri, model_sha256=settings.model_sha256,
                    profile_uri=settings.profile_uri, profile_sha256=None)
