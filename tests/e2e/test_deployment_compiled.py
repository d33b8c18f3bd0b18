"""The compiled model on a real cluster: verified against the skops model on its hold-out rows by the
verification Job, served by predictor pods over HTTP and gRPC (both through the Service), and
refused, with the reason in the Deployment's status, once the object in S3 no longer matches."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from e2e import deployment_support as lw

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

ROLLOUT = {"steps": [{"weight": 50, "pause": "5s"}], "analysis": {"interval": "2s", "minRequests": 1}}

# Runs in the cluster: v2 metadata over HTTP and one ModelInfer over gRPC, both through the Service.
_PROBE = r"""
import json, sys, urllib.request
import grpc
from loopwright.serving import grpc_predict_v2_pb2 as pb
host, model = sys.argv[1], sys.argv[2]
meta = json.load(urllib.request.urlopen(f"http://{host}:80/v2/models/{model}", timeout=10))
channel = grpc.insecure_channel(f"{host}:8081")
infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                            request_serializer=pb.ModelInferRequest.SerializeToString,
                            response_deserializer=pb.ModelInferResponse.FromString)
tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP64", shape=[2, 3],
    contents=pb.InferTensorContents(fp64_contents=[3.0, 3.0, 0.0, -3.0, -3.0, 0.0]))
answer = infer(pb.ModelInferRequest(model_name=model, inputs=[tensor]), timeout=10)
print(json.dumps({"form": meta["parameters"]["form"], "outputs": [o.name for o in answer.outputs],
                  "raw": [len(r) for r in answer.raw_output_contents]}))
"""


def _verified(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        obj = lw.get(kube, namespace, "modelversions", name)
        return obj if lw.condition(obj, "CompiledVerified") and obj["status"].get("phase") else None

    found: dict[str, Any] = kube.wait(done, timeout=240, what=f"{name} verified", interval=1)
    return found


def test_a_verified_compiled_model_serves_and_a_tampered_one_is_refused_with_its_reason(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    lw.register_compiled(kube, s3, namespace, model="iris", version=1, compiled_from="good", wait=False)
    mv = _verified(kube, namespace, "iris-v1")
    assert mv["status"]["phase"] == "Validated"
    check = next(c for c in mv["status"]["checks"] if c["name"] == "compiled")
    assert check["passed"] is True
    assert check["value"] == 1.0
    assert "500/500 rows agree" in check["message"]
    assert lw.condition(mv, "CompiledVerified")["status"] == "True"

    kube.custom.create_namespaced_custom_object(
        lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment("iris", model="iris", rollout=ROLLOUT)
    )
    lw.wait_serving(kube, namespace, "iris", timeout=180)
    pod = kube.core.list_namespaced_pod(namespace, label_selector="loopwright.dev/deployment=iris").items[0]
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["LOOPWRIGHT_COMPILED_SHA256"] == mv["spec"]["compiled"]["sha256"]

    probe = kube.run_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "probe", "image": pod.spec.containers[0].image,
            "command": ["python", "-c", _PROBE, f"iris.{namespace}.svc.cluster.local", "iris"]}]},
    })
    assert kube.exit_code(probe) == 0, kube.logs(namespace, "probe")
    seen = json.loads(kube.logs(namespace, "probe").strip().splitlines()[-1])
    assert seen["form"] == "compiled"
    assert seen["outputs"] == ["predict", "prediction_id"]

    # The object in S3 changes under the ModelVersion: a new pod refuses to serve, and says why.
    key = mv["spec"]["compiled"]["uri"].split("/", 3)[3]
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"LWPACK" + bytes(64))
    kube.core.delete_namespaced_pod(pod.metadata.name, namespace)

    def refused() -> dict[str, Any] | None:
        loaded = lw.condition(lw.get(kube, namespace, "deployments", "iris"), "ModelLoaded")
        return loaded if loaded and loaded["status"] == "False" else None

    loaded = kube.wait(refused, timeout=240, what="ModelLoaded=False on the Deployment", interval=2)
    assert loaded["reason"] == "ModelLoadFailed"
    assert "version 1" in loaded["message"]
    assert "sha256 is" in loaded["message"]
    assert mv["spec"]["compiled"]["sha256"] in loaded["message"]
    events = lw.events_once(kube, namespace, "iris", reason="ModelLoadFailed", type_="Warning")
    assert any("sha256" in (e.message or "") for e in events)


def test_a_compiled_model_that_answers_differently_never_serves(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    lw.register_compiled(kube, s3, namespace, model="wine", version=1, compiled_from="drifting", wait=False)
    mv = _verified(kube, namespace, "wine-v1")
    assert mv["status"]["phase"] == "Validated"  # the skops model itself is fine
    verified = lw.condition(mv, "CompiledVerified")
    assert verified["status"] == "False"
    assert verified["reason"] == "CompiledRejected"
    assert "DIFFERENT (row " in verified["message"]
    check = next(c for c in mv["status"]["checks"] if c["name"] == "compiled")
    assert check["passed"] is False
    assert np.isfinite(check["value"])
    assert check["value"] < 1.0
