"""The inputs digest of a run: equal for the same data and fit, different for what changes the model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loopwright.api.pipeline import Run, RunPhase, RunTrigger, TrainingPipelineSpec
from loopwright.core.training import inputs

DATA = "sha256:" + "a" * 64
SCHEMA = {"label": {"name": "y", "task": "classification"}, "columns": [{"name": "x", "type": "numeric"}]}


def _spec(**extra: Any) -> TrainingPipelineSpec:
    model = {"name": "m", "estimator": "LogisticRegression", "params": {"C": 0.5, "max_iter": 200}}
    return TrainingPipelineSpec.model_validate({"datasetRef": {"name": "d"}, "model": model, **extra})


def test_the_same_inputs_give_the_same_digest() -> None:
    one = inputs.digest(dataset_version=DATA, spec=_spec(), schema=SCHEMA)
    assert one.startswith("sha256:")
    assert len(one) == 71
    reordered = _spec(
        model={
            "name": "other-name",
            "estimator": "LogisticRegression",
            "params": {"max_iter": 200, "C": 0.5},
        },
        triggers={"cooldown": "1s"},
        metrics=["f1"],
        historyLimit=3,
    )
    # The registry name, triggers, metrics and history do not change the fitted model.
    assert inputs.digest(dataset_version=DATA, spec=reordered, schema=dict(reversed(SCHEMA.items()))) == one


def test_anything_that_changes_the_model_changes_the_digest() -> None:
    base = inputs.digest(dataset_version=DATA, spec=_spec(), schema=SCHEMA)
    others = [
        inputs.digest(dataset_version="sha256:" + "b" * 64, spec=_spec(), schema=SCHEMA),
        inputs.digest(dataset_version=DATA, spec=_spec(split={"seed": 7}), schema=SCHEMA),
        inputs.digest(dataset_version=DATA, spec=_spec(split={"testFraction": 0.3}), schema=SCHEMA),
        inputs.digest(
            dataset_version=DATA,
            spec=_spec(model={"name": "m", "estimator": "LogisticRegression"}),
            schema=SCHEMA,
        ),
        inputs.digest(
            dataset_version=DATA,
            spec=_spec(
                model={
                    "name": "m",
                    "estimator": "RandomForestClassifier",
                    "params": {"C": 0.5, "max_iter": 200},
                }
            ),
            schema=SCHEMA,
        ),
        inputs.digest(
            dataset_version=DATA,
            spec=_spec(),
            schema={**SCHEMA, "columns": [{"name": "x", "type": "categorical"}]},
        ),
    ]
    assert len({base, *others}) == len(others) + 1


def test_the_twin_is_the_earliest_version_with_the_digest() -> None:
    def mv(version: int, digest: str | None) -> dict[str, Any]:
        lineage = {"inputsDigest": digest} if digest else {}
        return {"metadata": {"name": f"m-v{version}"}, "spec": {"version": version, "lineage": lineage}}

    existing = [mv(3, "sha256:x"), mv(1, None), mv(2, "sha256:x"), mv(4, "sha256:y")]
    twin = inputs.twin(existing, "sha256:x")
    assert twin is not None
    assert twin["metadata"]["name"] == "m-v2"
    assert inputs.twin(existing, "sha256:z") is None


def test_only_drift_and_performance_runs_need_something_new() -> None:
    assert {t for t in RunTrigger if inputs.needs_learning(t)} == {RunTrigger.DRIFT, RunTrigger.PERFORMANCE}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    run = Run(id=3, name="p-3", trigger=RunTrigger.DRIFT, phase=RunPhase.PENDING, start_time=now)
    ended = inputs.skipped(run, same_as={"metadata": {"name": "m-v2"}, "spec": {"version": 2}}, now=now)
    assert (ended.phase, ended.reason, ended.completion_time) == (RunPhase.SKIPPED, "NoNewData", now)
    assert ended.message is not None
    assert ended.message.startswith("no new data since version 2 (m-v2 ")
