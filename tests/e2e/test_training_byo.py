"""A team's own pipeline code on kind: trained, verified, served and canaried in the team's image.

The sample (manifests/samples/byo: a custom transformer in a Pipeline, a Dockerfile FROM the ml
image) is built and loaded into the cluster; a TrainingPipeline names its factory. The run trains
in that image, the ModelVersion records the image and the declared type, the verification Job
loads the model in that image with exactly that type trusted, and a Deployment serves it (and
then a second version, through a canary) from the same image while a client sees no error. The
same artifact registered without the declaration is rejected.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from conftest import REPO, S3, Kube, restricted
from e2e import byo_support as byo
from e2e import deployment_support as lw
from e2e.test_training import Loop

sys.path.insert(0, str(REPO / "tests" / "demo"))
import churn

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]

ROLLOUT = {
    "steps": [{"weight": 50, "pause": "4s"}],
    "analysis": {"interval": "2s", "failureLimit": 1, "minRequests": 5,
                 "metrics": {"errorRate": {"max": 0.01}}},
}

_CLIENT = r"""
import json, random, sys, time, http.client
host, model, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
rng, codes, errors, n = random.Random(3), {}, [], 0
deadline = time.monotonic() + seconds
def summary():
    return json.dumps({"n": n, "codes": codes, "errors": errors[:10], "failed": len(errors)})
reported = time.monotonic()
while time.monotonic() < deadline and n < 20000:
    if time.monotonic() - reported > 2:
        print(summary(), flush=True)
        reported = time.monotonic()
    rows = [{"tenure_months": float(rng.randint(0, 120)), "monthly_charges": round(rng.uniform(10, 120), 2),
             "support_calls": float(rng.randint(0, 8)), "plan": rng.choice(["basic", "standard", "premium"])}
            for _ in range(3)]
    try:
        conn = http.client.HTTPConnection(host, 80, timeout=10)
        conn.request("POST", f"/v1/models/{model}:predict", json.dumps({"instances": rows}),
                     {"Content-Type": "application/json"})
        code = conn.getresponse().status
        conn.close()
        codes[str(code)] = codes.get(str(code), 0) + 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    n += 1
    time.sleep(0.05)
print(summary(), flush=True)
"""


@pytest.fixture(scope="module")
def team_image(kube: Kube) -> str:
    return byo.team_image()


@pytest.fixture
def loop(kube: Kube, namespace: str, s3: S3, crds: Any, operator: Any) -> Loop:
    return Loop(kube, namespace, s3, operator)


def churn_csv(rows: int, *, seed: int) -> bytes:
    return bytes(churn.csv_bytes(*churn.rows(rows, seed=seed)))


def start_client(kube: Kube, namespace: str, *, service: str, seconds: float) -> str:
    name = "churn-client"
    kube.core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": restricted({"restartPolicy": "Never", "containers": [{
            "name": "client", "image": lw.CLIENT_IMAGE,
            "command": ["python", "-c", _CLIENT, f"{service}.{namespace}.svc.cluster.local", service,
                        str(seconds)]}]}),
    })
    return name


def _container(pod_spec: Any) -> Any:
    return pod_spec.containers[0]


def test_a_teams_pipeline_trains_verifies_serves_and_canaries_in_its_image(
    loop: Loop, kube: Kube, namespace: str, team_image: str
) -> None:
    uri = loop.upload("churn/data.csv", churn_csv(1500, seed=1))
    loop.create("datasets", {"apiVersion": "loopwright.dev/v1alpha1", "kind": "Dataset",
                             "metadata": {"name": "churn"},
                             "spec": {"source": {"uri": uri}, "schema": byo.SCHEMA,
                                      "validation": {"minRows": 100}, "refreshInterval": "3s"}})
    loop.wait_dataset("churn", validated=True)
    loop.create("trainingpipelines", byo.pipeline("churnf", "churn", image=team_image))
    run = loop.wait_run("churnf", 1, timeout=300)
    assert run["phase"] == "Succeeded", run
    trainer = loop.jobs("loopwright.dev/run=churnf-1")[0]
    assert _container(trainer.spec.template.spec).image == team_image
    v1 = loop.wait_model("churnf-v1")
    assert v1["status"]["phase"] == "Validated", v1["status"]
    spec = v1["spec"]
    assert spec["image"] == team_image
    assert spec["artifact"]["trustedTypes"] == [byo.TRUSTED]
    assert spec["lineage"]["factory"] == byo.FACTORY
    assert spec["lineage"]["params"]["clf__max_iter"] == "300"
    assert "compiled" not in spec  # a team's transformer has no compiled form: skops serves
    verify = kube.batch.read_namespaced_job("churnf-v1-verify", namespace)
    command = _container(verify.spec.template.spec).command
    assert _container(verify.spec.template.spec).image == team_image
    assert command[command.index("--trusted-type") + 1] == byo.TRUSTED

    # The same artifact without the declaration: the verification Job refuses to load it.
    loop.create("modelversions", {
        "apiVersion": "loopwright.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "untrusted-v1"},
        "spec": {"model": "untrusted", "version": 1, "image": team_image,
                 "artifact": {"uri": spec["artifact"]["uri"], "sha256": spec["artifact"]["sha256"]}}})
    refused = loop.wait_model("untrusted-v1", phases=("Rejected", "Failed"))
    assert refused["status"]["phase"] == "Rejected", refused["status"]
    verified = loop.condition(refused, "ArtifactVerified")
    assert (verified["status"], verified["reason"]) == ("False", "ArtifactRejected"), verified
    assert "UntrustedTypes" in verified["message"]
    assert byo.TRUSTED in verified["message"]

    # Served from the team's image, then version 2 through a canary under traffic.
    loop.create("deployments", lw.deployment("churnf", model="churnf", rollout=ROLLOUT))
    lw.wait_serving(kube, namespace, "churnf", timeout=180)
    pods = kube.core.list_namespaced_pod(namespace, label_selector="loopwright.dev/deployment=churnf").items
    assert {_container(p.spec).image for p in pods} == {team_image}
    client = start_client(kube, namespace, service="churnf", seconds=600)
    kube.wait(lambda: kube.core.read_namespaced_pod(client, namespace).status.phase == "Running",
              timeout=60, what="the client running")
    loop.patch("trainingpipelines", "churnf",
               {"metadata": {"annotations": {"loopwright.dev/train-request": f"r{time.time():.0f}"}}})
    run2 = loop.wait_run("churnf", 2, timeout=300)
    assert run2["phase"] == "Succeeded", run2
    assert loop.wait_model("churnf-v2")["status"]["phase"] == "Validated"
    seen: list[str] = []

    def promoted() -> Any:
        status = lw.get(kube, namespace, "deployments", "churnf").get("status") or {}
        seen.append(str(status.get("phase")))
        done = (status.get("stable") or {}).get("version") == 2 and status["phase"] == "Stable"
        return status if done else None

    status = kube.wait(promoted, timeout=300, what="version 2 promoted", interval=1)
    assert "Progressing" in seen, seen
    assert status["history"][0]["event"] == "Promoted"
    result = lw.stop_client(kube, namespace, client)
    assert result["failed"] == 0, result
    assert set(result["codes"]) == {"200"}, json.dumps(result)
    assert result["n"] > 20, result
    pods = kube.core.list_namespaced_pod(namespace, label_selector="loopwright.dev/version=2").items
    assert {_container(p.spec).image for p in pods} == {team_image}

