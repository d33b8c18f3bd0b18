"""Version allocation and the ModelVersion of a run."""

from __future__ import annotations

from typing import Any

import pytest

from loopwright.api.labels import MODEL_LABEL, RUN_LABEL
from loopwright.core.training import registry

RESULT = {
    "artifacts": {
        "model": {"uri": "s3://bkt/models/ns/m/runs/p-2/model.skops", "sha256": "a" * 64},
        "profile": {"uri": "s3://bkt/models/ns/m/runs/p-2/profile.json", "sha256": "b" * 64},
    },
    "metrics": {"accuracy": 0.9, "f1_macro": 0.88},
    "primaryMetric": "accuracy",
    "estimator": "LogisticRegression",
    "params": {"C": 0.5, "penalty": None},
    "seed": 3,
    "dataset": {"uri": "s3://bkt/d.csv", "digest": "sha256:" + "c" * 64},
    "versions": {"python": "3.11.7", "sklearn": "1.9.1", "skops": "0.16.0"},
}


def _mv(version: int, run: str | None = None) -> dict[str, Any]:
    labels = {RUN_LABEL: run} if run else {}
    return {"metadata": {"name": f"m-v{version}", "labels": labels}, "spec": {"version": version}}


def test_next_version_is_one_above_the_highest() -> None:
    assert registry.next_version([]) == 1
    assert registry.next_version([_mv(1), _mv(4), _mv(2)]) == 5


def test_a_version_number_is_never_reused_even_after_the_newest_was_deleted() -> None:
    # The pipeline registered up to 5; version 5 (and 4) were deleted since.
    assert registry.next_version([_mv(1), _mv(3)], last=5) == 6
    assert registry.next_version([_mv(1), _mv(7)], last=5) == 8  # a version made by hand counts too
    assert registry.next_version([], last=2) == 3


def test_a_run_registered_before_is_found() -> None:
    existing = [_mv(1, "p-1"), _mv(2, "p-2")]
    assert registry.find_by_run(existing, "p-2")["metadata"]["name"] == "m-v2"
    assert registry.find_by_run(existing, "p-3") is None


def test_spec_carries_the_lineage() -> None:
    spec = registry.spec_from_result(
        model="m",
        version=2,
        result=RESULT,
        dataset="d",
        pipeline="p",
        run="p-2",
        image="loopwright/trainer:0.1.0",
    )
    wire = spec.to_wire()
    assert wire["artifact"] == {
        "uri": RESULT["artifacts"]["model"]["uri"],
        "sha256": "a" * 64,
        "format": "skops",
    }
    assert wire["primaryMetric"] == {"name": "accuracy", "value": 0.9}
    assert wire["framework"] == {"name": "scikit-learn", "version": "1.9.1"}
    assert wire["lineage"] == {
        "dataset": {"name": "d", "version": "sha256:" + "c" * 64},
        "pipeline": {"name": "p", "run": "p-2"},
        "image": "loopwright/trainer:0.1.0",
        "estimator": "LogisticRegression",
        "params": {"C": "0.5", "penalty": "null"},
        "seed": 3,
    }
    assert wire["profileUri"].endswith("profile.json")
    assert wire["profileSha256"] == "b" * 64


def test_spec_carries_the_compiled_model_and_its_holdout_rows() -> None:
    result = {**RESULT, "artifacts": {
        **RESULT["artifacts"],
        "compiled": {"uri": "s3://bkt/models/ns/m/runs/p-2/model.lwc", "sha256": "d" * 64},
        "holdout": {"uri": "s3://bkt/models/ns/m/runs/p-2/holdout.lwr", "sha256": "e" * 64},
    }}
    spec = registry.spec_from_result(model="m", version=2, result=result, dataset="d", pipeline="p",
                                     run="p-2", image="i")
    assert spec.to_wire()["compiled"] == {
        "uri": "s3://bkt/models/ns/m/runs/p-2/model.lwc", "sha256": "d" * 64, "format": "loopwright-compiled",
        "holdoutUri": "s3://bkt/models/ns/m/runs/p-2/holdout.lwr", "holdoutSha256": "e" * 64,
    }
    # A model the trainer could not compile has none (the skops artifact serves alone).
    plain = registry.spec_from_result(model="m", version=2, result=RESULT, dataset="d", pipeline="p",
                                      run="p-2", image="i")
    assert plain.compiled is None


def test_manifest_is_not_owned_and_is_labelled() -> None:
    spec = registry.spec_from_result(
        model="m", version=2, result=RESULT, dataset="d", pipeline="p", run="p-2", image="i"
    )
    labels = registry.labels(model="m", run="p-2", pipeline="p")
    manifest = registry.manifest(namespace="ns", spec=spec, labels=labels)
    assert manifest["metadata"]["name"] == "m-v2"
    assert "ownerReferences" not in manifest["metadata"]
    assert manifest["metadata"]["labels"][MODEL_LABEL] == "m"
    assert manifest["metadata"]["labels"][RUN_LABEL] == "p-2"
    assert manifest["kind"] == "ModelVersion"


def test_an_incomplete_result_is_refused() -> None:
    with pytest.raises(KeyError):
        registry.spec_from_result(
            model="m", version=1, result={"metrics": {}}, dataset="d", pipeline="p", run="p-1", image="i"
        )


def test_spec_points_at_the_runs_report_when_it_wrote_one() -> None:
    def spec(result: dict[str, Any]) -> dict[str, Any]:
        return registry.spec_from_result(model="m", version=2, result=result, dataset="d", pipeline="p",
                                         run="p-2", image="i").to_wire()

    assert "reportUri" not in spec(RESULT)  # a trainer from before the reports
    with_report = {**RESULT, "artifacts": {**RESULT["artifacts"],
                                           "report": {"uri": "s3://bkt/models/ns/m/runs/p-2/report.html",
                                                      "sha256": "d" * 64}}}
    assert spec(with_report)["reportUri"] == "s3://bkt/models/ns/m/runs/p-2/report.html"
