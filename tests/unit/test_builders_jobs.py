"""The Job manifests: restricted Pod Security, credentials by reference, deterministic names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopwright.api.dataset import DatasetSpec
from loopwright.api.modelversion import CompiledArtifact
from loopwright.api.names import child_name
from loopwright.api.pipeline import TrainingPipelineSpec
from loopwright.api.schema import DatasetSchema
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import (
    JobSettings,
    RunInputs,
    profiling_job,
    training_job,
    verification_job,
)

SCHEMA = {
    "label": {"name": "y", "task": "classification"},
    "columns": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}],
}
OWNER = Owner(kind="TrainingPipeline", name="p", uid="uid-1", namespace="ns")
SETTINGS = JobSettings(
    image="loopwright/trainer:0.1.0", s3_endpoint="http://s3:9000", credentials_secret="creds"
)


def _training(**spec: Any) -> dict[str, Any]:
    body = {
        "datasetRef": {"name": "d"},
        "model": {"name": "m", "estimator": "LogisticRegression", "params": {"C": 0.5}},
        **spec,
    }
    return training_job(_inputs(
        owner=OWNER,
        spec=TrainingPipelineSpec.model_validate(body),
        dataset_uri="s3://bkt/d.csv",
        dataset_format="csv",
        dataset_digest="sha256:" + "a" * 64,
        schema=DatasetSchema.model_validate(SCHEMA),
        credentials_secret=None,
        output_prefix="s3://bkt/out",
        labels={"loopwright.dev/trainingpipeline": "p"},
        settings=SETTINGS,
    ), name="p-3")


def _inputs(**fields: Any) -> RunInputs:
    return RunInputs(namespace="ns", **fields)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_training_job_runs_under_restricted_pod_security() -> None:
    job = _training()
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    ctx = _container(job)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in _container(job)["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False


def test_credentials_only_by_secret_reference() -> None:
    env = {e["name"]: e for e in _container(_training())["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"] == {"secretKeyRef": {"name": "creds", "key": key}}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://s3:9000"


def test_training_job_identity_owner_and_knobs() -> None:
    job = _training(
        job={"backoffLimit": 2, "activeDeadlineSeconds": 120, "resources": {"limits": {"memory": "1Gi"}}}
    )
    assert job["metadata"]["name"] == "p-3"
    assert job["metadata"]["namespace"] == "ns"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "loopwright.dev/v1alpha1",
            "kind": "TrainingPipeline",
            "name": "p",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = job["spec"]
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 120
    assert spec["suspend"] is False
    assert "ttlSecondsAfterFinished" not in spec  # kept until history pruning
    # spec.job.resources over the trainer's built-in defaults, key by key
    assert _container(job)["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                            "limits": {"cpu": "2", "memory": "1Gi"}}
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [2, 3]
    assert job["spec"]["template"]["metadata"]["labels"] == {"loopwright.dev/trainingpipeline": "p"}


def test_training_job_passes_the_exact_inputs() -> None:
    command = _container(_training(split={"seed": 7, "stratify": False}, metrics=["f1", "accuracy"]))[
        "command"
    ]

    def arg(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert command[0] == "loopwright-trainer"
    assert arg("--dataset-digest") == "sha256:" + "a" * 64
    assert arg("--estimator") == "LogisticRegression"
    assert arg("--params-json") == '{"C":0.5}'
    assert arg("--seed") == "7"
    assert "--no-stratify" in command
    assert arg("--metrics") == "f1,accuracy"


def test_suspend_setting_suspends() -> None:
    job = training_job(_inputs(
        owner=OWNER,
        spec=TrainingPipelineSpec.model_validate(
            {"datasetRef": {"name": "d"}, "model": {"name": "m", "estimator": "LogisticRegression"}}
        ),
        dataset_uri="s3://bkt/d.csv",
        dataset_format="csv",
        dataset_digest="sha256:" + "a" * 64,
        schema=DatasetSchema.model_validate(SCHEMA),
        credentials_secret="own",
        output_prefix="s3://bkt/o",
        labels={},
        settings=JobSettings(image="i", s3_endpoint=None, credentials_secret="creds", suspend=True),
    ), name="p-1")
    assert job["spec"]["suspend"] is True
    env = {e["name"]: e for e in _container(job)["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "own"
    assert "AWS_ENDPOINT_URL" not in env


@pytest.mark.parametrize("secret_ref", [None, {"name": "dataset-creds"}])
def test_profiling_job_uses_the_dataset_secret_when_named(secret_ref: dict[str, str] | None) -> None:
    source: dict[str, Any] = {"uri": "s3://bkt/d.csv"}
    if secret_ref:
        source["credentialsSecretRef"] = secret_ref
    spec = DatasetSpec.model_validate({"source": source, "schema": SCHEMA})
    job = profiling_job(
        namespace="ns",
        name="d-profile-0123456789",
        owner=Owner(kind="Dataset", name="d", uid="u", namespace="ns"),
        spec=spec,
        output_prefix="s3://bkt/datasets/ns/d/k",
        labels={},
        settings=SETTINGS,
    )
    env = {e["name"]: e for e in _container(job)["env"]}
    expected = secret_ref["name"] if secret_ref else "creds"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == expected
    command = _container(job)["command"]
    assert command[0] == "loopwright-profiler"
    assert command[command.index("--output-prefix") + 1] == "s3://bkt/datasets/ns/d/k"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["suspend"] is False


def test_verification_job() -> None:
    job = verification_job(
        namespace="ns",
        name="m-v1-verify",
        owner=Owner(kind="ModelVersion", name="m-v1", uid="u", namespace="ns"),
        uri="s3://bkt/model.skops",
        sha256="f" * 64,
        labels={"a": "b"},
        settings=SETTINGS,
    )
    assert _container(job)["command"] == [
        "loopwright-verifier",
        "--uri",
        "s3://bkt/model.skops",
        "--sha256",
        "f" * 64,
    ]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ModelVersion"


def test_verification_job_checks_the_compiled_model_on_the_holdout_rows() -> None:
    compiled = CompiledArtifact(uri="s3://bkt/model.lwc", sha256="c" * 64, holdout_uri="s3://bkt/holdout.lwr",
                                holdout_sha256="d" * 64)
    job = verification_job(namespace="ns", name="m-v1-verify",
                           owner=Owner(kind="ModelVersion", name="m-v1", uid="u", namespace="ns"),
                           uri="s3://bkt/model.skops", sha256="f" * 64, labels={}, settings=SETTINGS,
                           compiled=compiled)
    assert _container(job)["command"][5:] == [
        "--compiled-uri", "s3://bkt/model.lwc", "--compiled-sha256", "c" * 64,
        "--holdout-uri", "s3://bkt/holdout.lwr", "--holdout-sha256", "d" * 64,
    ]


def test_child_names_are_deterministic_and_fit_63() -> None:
    assert child_name("pipeline", "12") == "pipeline-12"
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    name_a, name_b = child_name(long_a, "12"), child_name(long_b, "12")
    assert len(name_a) <= 63
    assert len(name_b) <= 63
    assert name_a.endswith("-12")
    assert name_a != name_b
    assert child_name(long_a, "12") == name_a
    assert not child_name("b" * 80 + "-", "profile-0123456789").startswith("-")


def test_training_job_carries_the_gates_for_the_report() -> None:
    assert "--gates-json" not in _container(_training())["command"]
    gates = {"model": "m", "validation": {"thresholds": []}, "champion": {"name": "m-v1", "version": 1,
                                                                         "metrics": {"accuracy": 0.9}}}
    job = training_job(_inputs(
        owner=OWNER,
        spec=TrainingPipelineSpec.model_validate({"datasetRef": {"name": "d"},
                                                  "model": {"name": "m", "estimator": "LogisticRegression"}}),
        dataset_uri="s3://bkt/d.csv", dataset_format="csv", dataset_digest="sha256:" + "a" * 64,
        schema=DatasetSchema.model_validate(SCHEMA), credentials_secret=None, output_prefix="s3://bkt/out",
        labels={}, settings=SETTINGS), name="p-3", gates=gates)
    command = _container(job)["command"]
    assert json.loads(command[command.index("--gates-json") + 1]) == gates
