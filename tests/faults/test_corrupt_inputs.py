"""Case 6: corrupt or hostile inputs at rest.

* A model artifact replaced in S3 after its ModelVersion was validated, a reference profile with a
  NaN edge, one with a million bins: each version's predictor refuses to load it and says why
  (ModelLoaded=False on the Deployment, a Warning Event) while the previous version keeps serving
  every request.
* A CSV with a 1 MB line, and a 10 GB Dataset object (a sparse file in the S3 server's volume:
  no disk is used, but S3 lists and serves 10 GB): bounded memory, a clear anomaly, never an
  unexplained OOM of the profiling Job.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from e2e import deployment_support as lw
from e2e.test_training import SCHEMA, make_csv
from faults.node import Node, s3_pod
from faults.traffic import Client
from faults.waits import load_refused
from loopwright import storage

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.timeout(900)]

MODEL = "fraud"
ROLLOUT = {"steps": [{"weight": 50, "pause": "5s"}]}


def _key(uri: str) -> str:
    return uri.split("/", 3)[3]


def _register_with_profile(kube: Any, s3: Any, namespace: str, *, version: int, profile: bytes) -> None:
    """Version `version`: version 1's artifact, with `profile` as its reference profile."""
    v1 = lw.get(kube, namespace, "modelversions", f"{MODEL}-v1")["spec"]
    key = f"e2e/{namespace}/{MODEL}/v{version}/profile.json"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=profile)
    stored = lw.Stored(model_uri=v1["artifact"]["uri"], model_sha256=v1["artifact"]["sha256"],
                       profile_uri=f"s3://{s3.bucket}/{key}", profile_sha256=storage.sha256_hex(profile))
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "modelversions",
                                                lw.model_version(model=MODEL, version=version, stored=stored))
    kube.wait(lambda: lw.phase(kube, namespace, "modelversions", f"{MODEL}-v{version}") == "Validated",
              timeout=180, what=f"{MODEL}-v{version} Validated", interval=1)


def test_corrupt_artifact_and_hostile_profiles_are_refused_while_the_old_version_serves(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    lw.register(kube, s3, namespace, model=MODEL, version=1, kind="good")
    body = lw.deployment(MODEL, model=MODEL, rollout=ROLLOUT, version=1)
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", body)
    lw.wait_serving(kube, namespace, MODEL, timeout=180)
    traffic = Client.start(kube, namespace, service=MODEL, model=MODEL)
    baseline = traffic.now()

    # Version 2 validated, then its artifact replaced in S3 by other (valid) model bytes.
    lw.register(kube, s3, namespace, model=MODEL, version=2, kind="drifting")
    v1 = lw.get(kube, namespace, "modelversions", f"{MODEL}-v1")["spec"]["artifact"]
    v2 = lw.get(kube, namespace, "modelversions", f"{MODEL}-v2")["spec"]["artifact"]
    s3.client().copy_object(Bucket=s3.bucket, Key=_key(v2["uri"]),
                            CopySource={"Bucket": s3.bucket, "Key": _key(v1["uri"])})
    profile_uri = lw.get(kube, namespace, "modelversions", f"{MODEL}-v1")["spec"]["profileUri"]
    profile = json.loads(s3.client().get_object(Bucket=s3.bucket, Key=_key(profile_uri))["Body"].read())
    nan_edge = json.loads(json.dumps(profile))
    nan_edge["features"]["a"]["edges"][1] = math.nan
    _register_with_profile(kube, s3, namespace, version=3, profile=json.dumps(nan_edge).encode())
    many_bins = json.loads(json.dumps(profile))
    many_bins["features"]["b"].update(edges=[float(i) for i in range(1_000_000)], counts=[1] * 1_000_001)
    _register_with_profile(kube, s3, namespace, version=4, profile=json.dumps(many_bins).encode())

    cases = {2: ("artifact replaced after validation", "sha256 is"),
             3: ("profile with a NaN edge", "finite"),
             4: ("profile with 1,000,001 bins", "at most")}
    for version, (what, expected) in cases.items():
        before = traffic.now()
        start = time.monotonic()
        kube.custom.patch_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", MODEL,
                                                   {"spec": {"version": version}})
        loaded = load_refused(kube, namespace, MODEL, version)
        seconds = time.monotonic() - start
        assert loaded["reason"] == "ModelLoadFailed", loaded
        assert expected in loaded["message"], loaded
        status = lw.get(kube, namespace, "deployments", MODEL)["status"]
        assert status["stable"]["version"] == 1, status
        during = traffic.now().minus(before)
        figures.record(f"{what}: seconds until refused (ModelLoaded=False)", f"{seconds:.1f}")
        figures.record(f"{what}: reason shown", loaded["message"][-160:])
        figures.record(f"{what}: failed requests to the old version", during.describe())
        assert during.failed == 0, during
    events = lw.events_once(kube, namespace, MODEL, reason="ModelLoadFailed", type_="Warning")
    assert any("sha256" in (e.message or "") for e in events)
    final = traffic.stop().minus(baseline)
    figures.record("three refused versions: failed requests in all", final.describe())
    assert final.failed == 0, final


def _dataset(name: str, uri: str) -> dict[str, Any]:
    # Every invalid value is reported (maxInvalidFraction 0), so one bad row is an anomaly.
    return {"apiVersion": f"{lw.GROUP}/{lw.VERSION}", "kind": "Dataset", "metadata": {"name": name},
            "spec": {"source": {"uri": uri}, "schema": SCHEMA, "refreshInterval": "1h",
                     "validation": {"minRows": 20, "maxInvalidFraction": 0.0}}}


def _judged(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = lw.get(kube, namespace, "datasets", name)
        validated = lw.condition(obj, "Validated") or {}
        return obj if validated.get("status") in ("True", "False") else None

    found: dict[str, Any] = kube.wait(probe, timeout=300, what=f"Dataset {name} judged", interval=1)
    return found


def _profiling_pods(kube: Any, namespace: str, name: str) -> list[Any]:
    return list(kube.core.list_namespaced_pod(
        namespace, label_selector=f"loopwright.dev/dataset={name}").items)


def test_a_1mb_line_and_a_10gb_object_are_anomalies_in_bounded_memory(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    client = s3.client()
    prefix = f"e2e/{namespace}"
    # 300 good rows and one whose x2 is a 1 MB token.
    lines = make_csv(rows=300, seed=3).decode().splitlines()
    lines.insert(150, f"0.5,{'z' * 1_000_000},red,yes")
    body = ("\n".join(lines) + "\n").encode()
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/long/data.csv", Body=body)
    start = time.monotonic()
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "datasets",
                                                _dataset("long", f"s3://{s3.bucket}/{prefix}/long/data.csv"))
    obj = _judged(kube, namespace, "long")
    seconds = time.monotonic() - start
    status = obj["status"]
    assert (lw.condition(obj, "Validated") or {})["status"] == "False", status
    (anomaly,) = [a for a in status["anomalies"] if a.get("column") == "x2"]
    assert anomaly["kind"] == "WrongType", anomaly
    assert len(anomaly["message"]) <= 1000, anomaly  # the token is not copied into the status
    for pod in _profiling_pods(kube, namespace, "long"):
        assert all((s.state.terminated or s.last_state.terminated) is None
                   or (s.state.terminated or s.last_state.terminated).reason != "OOMKilled"
                   for s in pod.status.container_statuses or [])
    figures.record("CSV with a 1 MB line: seconds until judged", f"{seconds:.1f}")
    figures.record("CSV with a 1 MB line: anomaly", f"{anomaly['kind']}: {anomaly['message'][:120]}")

    # 10 GB: a small object, then its file in the S3 server's emptyDir made sparse at 10 GiB.
    key = f"{prefix}/huge/data.csv"
    client.put_object(Bucket=s3.bucket, Key=key, Body=b"x1,x2,color,y\n")
    node = Node.of_cluster()
    path = (f"/var/lib/kubelet/pods/{s3_pod(kube).metadata.uid}/volumes/kubernetes.io~empty-dir/data/"
            f"{s3.bucket}/{key}")
    node.exec("truncate", "-s", "10G", path)
    assert client.head_object(Bucket=s3.bucket, Key=key)["ContentLength"] == 10 * 1024**3
    start = time.monotonic()
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "datasets",
                                                _dataset("huge", f"s3://{s3.bucket}/{key}"))
    obj = _judged(kube, namespace, "huge")
    seconds = time.monotonic() - start
    node.exec("rm", "-f", path)
    status = obj["status"]
    (anomaly,) = status["anomalies"]
    assert anomaly["kind"] == "TooLarge", status
    assert "10737418240 bytes" in anomaly["message"], anomaly
    figures.record("10 GiB object (sparse): seconds until judged", f"{seconds:.1f}")
    figures.record("10 GiB object (sparse): anomaly", f"{anomaly['kind']}: {anomaly['message'][-150:]}")
    figures.record("10 GiB object (sparse): bytes read by the profiler",
                   "0 (refused from the listing; bound 2 GiB)")
