"""The first half of the loop on a real cluster: Dataset -> TrainingPipeline Job -> ModelVersion.

Each test gets its own namespace, uploads data it generates to S3, and uses the in-cluster
operator (the `operator` fixture), which it may take down and bring back. The Jobs run Loopwright's
ML image under the kubelet: a trainer over its memory limit is killed by the kernel (OOMKilled).
"""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import numpy as np
import pytest

from conftest import S3, Crd, Kube
from operator_fixture import Operator

pytestmark = pytest.mark.cluster

GROUP, VERSION = "loopwright.dev", "v1alpha1"
SECRET = "loopwright-s3"
TIMEOUT = 180


# ------------------------------------------------------------------------------------------ helpers


def make_csv(*, rows: int, seed: int, invalid: bool = False) -> bytes:
    """A learnable binary problem: y = yes when x1 + x2/2 (+ 0.5 for red) + noise > 0."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows)
    score = x1 + 0.5 * x2 + 0.5 * (color == "red") + rng.normal(scale=0.3, size=rows)
    y = np.where(score > 0, "yes", "no")
    out = io.StringIO()
    if invalid:  # no x2 column, x1 out of range, an unknown colour
        out.write("x1,color,y\n")
        x1[0] = 100.0
        color[1] = "purple"
        for i in range(rows):
            out.write(f"{x1[i]:.6f},{color[i]},{y[i]}\n")
    else:
        out.write("x1,x2,color,y\n")
        for i in range(rows):
            out.write(f"{x1[i]:.6f},{x2[i]:.6f},{color[i]},{y[i]}\n")
    return out.getvalue().encode()


SCHEMA = {
    "label": {"name": "y", "task": "classification"},
    "columns": [
        {"name": "x1", "type": "numeric", "min": -10, "max": 10},
        {"name": "x2", "type": "numeric"},
        {"name": "color", "type": "categorical", "allowedValues": ["red", "green", "blue"]},
    ],
}


def dataset(name: str, uri: str, *, refresh: str = "3s", min_rows: int = 20) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": uri},
            "schema": SCHEMA,
            "validation": {"minRows": min_rows},
            "refreshInterval": refresh,
        },
    }


def pipeline(
    name: str,
    dataset_name: str,
    *,
    model: str,
    estimator: str = "LogisticRegression",
    params: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body = {
        "datasetRef": {"name": dataset_name},
        "model": {"name": model, "estimator": estimator, "params": params or {}},
        "metrics": ["accuracy"],
        "validation": {"thresholds": [{"metric": "accuracy", "min": 0.6}]},
        "triggers": {"cooldown": "1s"},
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingPipeline",
        "metadata": {"name": name},
        "spec": body,
    }


class Loop:
    """What a test does with the cluster: apply objects, read them, wait for them."""

    def __init__(self, kube: Kube, namespace: str, s3: S3, operator: Operator) -> None:
        self.kube, self.ns, self.s3, self.operator = kube, namespace, s3, operator
        self.prefix = f"e2e/{namespace}"

    def upload(self, key: str, data: bytes) -> str:
        self.s3.client().put_object(Bucket=self.s3.bucket, Key=f"{self.prefix}/{key}", Body=data)
        return f"s3://{self.s3.bucket}/{self.prefix}/{key}"

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def list(self, plural: str) -> list[dict[str, Any]]:
        return self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, plural)["items"]

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> None:
        self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name, body)

    def jobs(self, selector: str) -> list[Any]:
        return self.kube.batch.list_namespaced_job(self.ns, label_selector=selector).items

    def events(self, name: str) -> list[tuple[str, str, str]]:
        items = self.kube.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name}"
        ).items
        return [(e.type, e.reason, e.message) for e in items]

    def event(self, name: str, reason: str, *, containing: str = "") -> tuple[str, str]:
        """The (type, message) of an Event once it is there: Events are posted after the status."""
        def probe() -> tuple[str, str] | None:
            return next(((type_, message) for type_, found, message in self.events(name)
                         if found == reason and containing in message), None)

        found: tuple[str, str] = self.wait(probe, what=f"a {reason} Event on {name}", timeout=30)
        return found

    def condition(self, obj: dict[str, Any], type_: str) -> dict[str, Any]:
        return next((c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), {})

    def wait(self, probe: Any, *, what: str, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout:.0f}s waiting for {what}\n--- operator log ---\n"
                    f"{self.operator.log()[-6000:]}"
                )
            time.sleep(0.5)

    def wait_dataset(self, name: str, *, validated: bool, version: str | None = None) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get("datasets", name)
            cond = self.condition(obj, "Validated")
            ok = (
                cond.get("status") == ("True" if validated else "False") and cond.get("reason") != "Profiling"
            )
            fresh = version is None or obj["status"].get("version") != version
            return obj if ok and fresh else None

        return self.wait(probe, what=f"Dataset {name} Validated={validated}")

    def wait_run(
        self,
        name: str,
        run_id: int,
        *,
        phases: tuple[str, ...] = ("Succeeded", "Failed"),
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            runs = (self.get("trainingpipelines", name).get("status") or {}).get("runs") or []
            return next((r for r in runs if r["id"] == run_id and r["phase"] in phases), None)

        return self.wait(probe, what=f"run {run_id} of {name} in {phases}", timeout=timeout)

    def wait_model(self, name: str, *, phases: tuple[str, ...] = ("Validated", "Rejected")) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            try:
                obj = self.get("modelversions", name)
            except Exception:
                return None
            return obj if (obj.get("status") or {}).get("phase") in phases else None

        return self.wait(probe, what=f"ModelVersion {name} in {phases}")


@pytest.fixture
def loop(kube: Kube, namespace: str, s3: S3, crds: dict[str, Crd], operator: Operator) -> Loop:
    return Loop(kube, namespace, s3, operator)


def _unique() -> str:
    return uuid.uuid4().hex[:6]


# ------------------------------------------------------------------------------------------ tests


def test_first_version_then_new_data_then_pipeline_deletion(loop: Loop) -> None:
    uri = loop.upload("iris/data.csv", make_csv(rows=300, seed=1))
    loop.create("datasets", dataset("points", uri))
    first = loop.wait_dataset("points", validated=True)
    status = first["status"]
    assert status["version"].startswith("sha256:")
    assert status["validatedVersion"] == status["version"]
    assert status["rows"] == 300
    assert status["anomalies"] == []
    assert status["profileUri"].startswith("s3://")
    assert loop.condition(first, "Ready")["status"] == "True"

    loop.create("trainingpipelines", pipeline("clf", "points", model="clf"))
    run1 = loop.wait_run("clf", 1)
    assert run1["phase"] == "Succeeded", run1
    assert run1["trigger"] == "NewData"
    assert run1["datasetVersion"] == status["version"]
    assert run1["modelVersion"] == "clf-v1"
    v1 = loop.wait_model("clf-v1")
    assert v1["status"]["phase"] == "Validated", v1["status"]
    spec = v1["spec"]
    assert spec["version"] == 1
    assert spec["artifact"]["sha256"]
    assert spec["metrics"]["accuracy"] >= 0.6
    lineage = spec["lineage"]
    assert lineage["dataset"] == {"name": "points", "version": status["version"]}
    assert lineage["pipeline"] == {"name": "clf", "run": "clf-1"}
    assert lineage["estimator"] == "LogisticRegression"
    assert lineage["seed"] == 0
    assert lineage["image"]
    assert "sklearn" in spec["libraries"]
    assert spec["framework"]["name"] == "scikit-learn"
    checks = {c["name"]: c for c in v1["status"]["checks"]}
    assert checks["artifact"]["passed"]
    assert checks["min:accuracy"]["threshold"] == 0.6
    assert checks["min:accuracy"]["passed"]
    assert checks["champion"]["passed"]
    assert "whenNoChampion=Pass" in checks["champion"]["message"]
    for type_ in ("ArtifactVerified", "Validated", "Ready"):
        assert loop.condition(v1, type_)["status"] == "True", type_

    # New data: a second version, a second run, a second ModelVersion.
    loop.upload("iris/data.csv", make_csv(rows=400, seed=2))
    second = loop.wait_dataset("points", validated=True, version=status["version"])
    assert second["status"]["rows"] == 400
    assert [h["version"] for h in second["status"]["history"]] == [
        second["status"]["version"],
        status["version"],
    ]
    run2 = loop.wait_run("clf", 2)
    assert run2["phase"] == "Succeeded", run2
    assert run2["datasetVersion"] == second["status"]["version"], run2
    v2 = loop.wait_model("clf-v2")
    assert v2["spec"]["lineage"]["dataset"]["version"] == second["status"]["version"]
    assert len(loop.jobs("loopwright.dev/trainingpipeline=clf")) == 2
    assert "registered ModelVersion clf-v2" in loop.event("clf", "RunSucceeded", containing="clf-2")[1]

    # Deleting the pipeline deletes its Jobs (owner references) and keeps the registry.
    loop.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, loop.ns, "trainingpipelines", "clf")
    loop.wait(lambda: not loop.jobs("loopwright.dev/trainingpipeline=clf"), what="the Jobs to be collected")
    names = sorted(mv["metadata"]["name"] for mv in loop.list("modelversions"))
    assert names == ["clf-v1", "clf-v2"]


def test_invalid_data_and_forbidden_estimator_never_train(loop: Loop) -> None:
    uri = loop.upload("bad/data.csv", make_csv(rows=10, seed=3, invalid=True))
    loop.create("datasets", dataset("bad", uri, min_rows=50))
    obj = loop.wait_dataset("bad", validated=False)
    kinds = {a["kind"] for a in obj["status"]["anomalies"]}
    assert {"MissingColumn", "OutOfRange", "UnknownCategory", "TooFewRows"} <= kinds, obj["status"][
        "anomalies"
    ]
    assert "validatedVersion" not in obj["status"]
    assert loop.condition(obj, "Ready")["status"] == "False"
    assert loop.event("bad", "ValidationFailed")[0] == "Warning"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    missing = f"s3://{loop.s3.bucket}/{loop.prefix}/nothing-here.csv"
    loop.create("datasets", dataset("missing", missing))
    gone = loop.wait_dataset("missing", validated=False)
    assert loop.condition(gone, "Validated")["reason"] == "SourceNotFound"
    assert gone["status"]["observedGeneration"] == gone["metadata"]["generation"]

    loop.create("trainingpipelines", pipeline("on-bad", "bad", model="m1"))
    good = loop.upload("good/data.csv", make_csv(rows=100, seed=4))
    loop.create("datasets", dataset("good", good))
    loop.wait_dataset("good", validated=True)
    loop.create("trainingpipelines", pipeline("forbidden", "good", model="m2", estimator="SVC"))
    loop.create("trainingpipelines", pipeline("bad-param", "good", model="m3", params={"n_jobs": 4}))

    def refused(name: str) -> dict[str, Any] | None:
        cond = loop.condition(loop.get("trainingpipelines", name), "Ready")
        return cond if cond.get("reason") == "Refused" else None

    assert "not allowed" in loop.wait(lambda: refused("forbidden"), what="SVC refused")["message"]
    assert "n_jobs" in loop.wait(lambda: refused("bad-param"), what="n_jobs refused")["message"]
    assert "not allowed" in loop.event("forbidden", "Refused")[1]
    waiting = loop.wait(
        lambda: (
            loop.condition(loop.get("trainingpipelines", "on-bad"), "Ready").get("reason") == "WaitingForData"
        ),
        what="on-bad waiting for data",
    )
    assert waiting
    time.sleep(3)  # give a wrong implementation the time to start something
    assert loop.jobs("app.kubernetes.io/managed-by=loopwright,loopwright.dev/trainingpipeline") == []
    for name in ("on-bad", "forbidden", "bad-param"):
        assert (loop.get("trainingpipelines", name).get("status") or {}).get("runCount", 0) == 0


def test_worse_model_is_rejected_against_the_champion(loop: Loop) -> None:
    uri = loop.upload("champ/data.csv", make_csv(rows=300, seed=5))
    loop.create("datasets", dataset("champ", uri))
    loop.wait_dataset("champ", validated=True)
    loop.create("trainingpipelines", pipeline("champ", "champ", model="champ"))
    v1 = loop.wait_model("champ-v1")
    assert v1["status"]["phase"] == "Validated"
    # The Deployment controller would do this on promotion.
    loop.kube.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, loop.ns, "modelversions", "champ-v1", {"status": {"aliases": ["production"]}}
    )

    # A crippled model: almost no features survive so strong a penalty.
    loop.patch(
        "trainingpipelines",
        "champ",
        {
            "spec": {"model": {"params": {"C": 0.00001}}},
            "metadata": {"annotations": {"loopwright.dev/train-request": "worse-1"}},
        },
    )
    run2 = loop.wait_run("champ", 2)
    assert run2["phase"] == "Succeeded", run2
    assert run2["trigger"] == "Manual", run2
    v2 = loop.wait_model("champ-v2")
    status = v2["status"]
    assert status["phase"] == "Rejected", status
    champion = next(c for c in status["checks"] if c["name"] == "champion")
    assert not champion["passed"]
    assert champion["threshold"] == pytest.approx(v1["spec"]["metrics"]["accuracy"])
    assert champion["value"] == pytest.approx(v2["spec"]["metrics"]["accuracy"])
    assert status["champion"] == {
        "name": "champ-v1",
        "version": 1,
        "metric": "accuracy",
        "value": pytest.approx(v1["spec"]["metrics"]["accuracy"]),
    }
    assert loop.condition(v2, "Validated")["status"] == "False"
    assert loop.event("champ-v2", "Rejected")[0] == "Warning"
    # The same request token again is not a new request.
    loop.patch(
        "trainingpipelines",
        "champ",
        {"metadata": {"annotations": {"loopwright.dev/train-request": "worse-1"}}},
    )
    time.sleep(3)
    assert loop.get("trainingpipelines", "champ")["status"]["runCount"] == 2

    # Hand-made versions: no pipeline, so the artifact checks alone decide.
    artifact = v1["spec"]["artifact"]
    for name, sha in (("handmade-v1", artifact["sha256"]), ("tampered-v1", "0" * 64)):
        loop.create(
            "modelversions",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelVersion",
                "metadata": {"name": name},
                "spec": {
                    "model": name.removesuffix("-v1"),
                    "version": 1,
                    "artifact": {"uri": artifact["uri"], "sha256": sha},
                },
            },
        )
    handmade = loop.wait_model("handmade-v1")
    assert handmade["status"]["phase"] == "Validated", handmade["status"]
    assert "artifact checks alone" in loop.condition(handmade, "Validated")["message"]
    tampered = loop.wait_model("tampered-v1")
    assert tampered["status"]["phase"] == "Rejected", tampered["status"]
    assert loop.condition(tampered, "ArtifactVerified")["status"] == "False"
    assert "DigestMismatch" in tampered["status"]["checks"][0]["message"]


def test_failing_jobs_report_their_reason(loop: Loop) -> None:
    uri = loop.upload("fail/data.csv", make_csv(rows=200, seed=6))
    loop.create("datasets", dataset("fail", uri))
    loop.wait_dataset("fail", validated=True)
    loop.create(
        "trainingpipelines",
        pipeline(
            "late", "fail", model="late", historyLimit=1, job={"activeDeadlineSeconds": 1, "backoffLimit": 3}
        ),
    )
    run = loop.wait_run("late", 1)
    assert run["phase"] == "Failed", run
    assert run["reason"] == "DeadlineExceeded", run

    loop.patch(
        "trainingpipelines",
        "late",
        {
            "spec": {
                "job": {
                    "activeDeadlineSeconds": 600,
                    "backoffLimit": 1,
                    "resources": {"limits": {"memory": "40Mi"}},
                }
            },
            "metadata": {"annotations": {"loopwright.dev/train-request": "oom-1"}},
        },
    )
    run = loop.wait_run("late", 2)
    assert run["phase"] == "Failed", run
    assert run["reason"] == "OutOfMemory", run
    assert loop.event("late", "RunFailed", containing="late-2")[0] == "Warning"
    assert not loop.list("modelversions")
    # historyLimit 1: the first run and its Job are gone.
    assert [r["id"] for r in loop.get("trainingpipelines", "late")["status"]["runs"]] == [2]
    loop.wait(
        lambda: [j.metadata.name for j in loop.jobs("loopwright.dev/trainingpipeline=late")] == ["late-2"],
        what="the Job of run 1 to be deleted",
    )


def test_a_job_the_api_server_refuses_is_reported_then_started_once_allowed(loop: Loop) -> None:
    uri = loop.upload("quota/data.csv", make_csv(rows=100, seed=9))
    loop.create("datasets", dataset("quota", uri))
    loop.wait_dataset("quota", validated=True)
    core = loop.kube.core
    core.create_namespaced_resource_quota(
        loop.ns, {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}})
    loop.wait(lambda: (core.read_namespaced_resource_quota("no-jobs", loop.ns).status.hard or {}),
              what="the quota controller to publish the quota")
    loop.create("trainingpipelines", pipeline("capped", "quota", model="capped"))

    def ready() -> dict[str, Any]:
        return loop.condition(loop.get("trainingpipelines", "capped"), "Ready")

    refused = loop.wait(lambda: ready() if ready().get("reason") == "JobRefused" else None,
                        what="the refused Job in Ready")
    assert refused["status"] == "False"
    assert "capped-1" in refused["message"]
    assert "exceeded quota" in refused["message"], refused
    assert loop.event("capped", "JobRefused")[0] == "Warning"
    assert loop.jobs("loopwright.dev/trainingpipeline=capped") == []

    core.delete_namespaced_resource_quota("no-jobs", loop.ns)
    def jobs() -> list[str]:
        return [j.metadata.name for j in loop.jobs("loopwright.dev/trainingpipeline=capped")]

    loop.wait(lambda: jobs() == ["capped-1"], what="the run's Job once the quota is gone")
    loop.wait(lambda: ready().get("reason") == "Ready", what="Ready again")


def test_operator_restart_during_a_run_duplicates_nothing(loop: Loop) -> None:
    uri = loop.upload("restart/data.csv", make_csv(rows=300, seed=7))
    loop.create("datasets", dataset("restart", uri))
    loop.wait_dataset("restart", validated=True)
    loop.create("trainingpipelines", pipeline("restart", "restart", model="restart"))
    loop.wait(lambda: loop.jobs("loopwright.dev/trainingpipeline=restart"), what="the run's Job")
    loop.operator.scale_down(kill=True)
    job = loop.jobs("loopwright.dev/trainingpipeline=restart")[0]
    loop.wait(
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for c in loop.kube.batch.read_namespaced_job(job.metadata.name, loop.ns).status.conditions or ()
        ),
        what="the Job to finish while the operator is down",
    )
    loop.operator.start()
    loop.wait_model("restart-v1")
    loop.operator.restart(kill=True)  # and once more right after registration
    time.sleep(8)
    jobs = loop.jobs("loopwright.dev/trainingpipeline=restart")
    assert [j.metadata.name for j in jobs] == ["restart-1"]
    assert [mv["metadata"]["name"] for mv in loop.list("modelversions")] == ["restart-v1"]
    status = loop.get("trainingpipelines", "restart")["status"]
    assert status["runCount"] == 1
    assert status["runs"][0]["modelVersion"] == "restart-v1"


def test_suspend_holds_a_request_and_the_schedule_starts_runs(loop: Loop) -> None:
    uri = loop.upload("cron/data.csv", make_csv(rows=200, seed=8))
    loop.create("datasets", dataset("cron", uri))
    loop.wait_dataset("cron", validated=True)
    body = pipeline(
        "cron",
        "cron",
        model="cron",
        triggers={"schedule": "* * * * *", "onNewData": False, "cooldown": "1s", "suspend": True},
    )
    body["metadata"]["annotations"] = {"loopwright.dev/train-request": "r1"}
    loop.create("trainingpipelines", body)
    status = loop.wait(
        lambda: (loop.get("trainingpipelines", "cron").get("status") or {}).get("nextScheduledTime")
        and loop.get("trainingpipelines", "cron")["status"],
        what="nextScheduledTime",
    )
    assert status["nextScheduledTime"].endswith(":00Z")
    time.sleep(3)
    status = loop.get("trainingpipelines", "cron")["status"]
    assert status.get("runCount", 0) == 0
    assert "suspended" in loop.condition(loop.get("trainingpipelines", "cron"), "Training")["message"]

    loop.patch("trainingpipelines", "cron", {"spec": {"triggers": {"suspend": False}}})
    first = loop.wait_run("cron", 1)
    assert first["trigger"] == "Manual"
    assert first["phase"] == "Succeeded", first
    scheduled = loop.wait_run("cron", 2, timeout=150)
    assert scheduled["trigger"] == "Schedule", scheduled
    after = loop.get("trainingpipelines", "cron")["status"]
    assert after["nextScheduledTime"] > scheduled["startTime"]
