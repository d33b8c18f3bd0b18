"""Shared pieces of the drift and loop e2e tests: data, training, traffic to predictor pods, and a
webhook receiver in the cluster (the in-cluster operator cannot reach the host's loopback)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from conftest import ML_IMAGE, restricted

GROUP, VERSION = "loopwright.dev", "v1alpha1"
REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
FEATURES = ("a", "b", "c")
SCHEMA = {
    "label": {"name": "y", "task": "classification"},
    "columns": [{"name": n, "type": "numeric"} for n in FEATURES],
}
BATCH = 50
FEEDBACK_TOKEN = "e2e-feedback-token-0123456789"
FEEDBACK = {"tokenSecretRef": {"name": "feedback", "key": "token"}}
"""spec.feedback of the tests' Deployments: /feedback needs the token of this Secret."""


def feedback_secret(kube: Any, namespace: str) -> None:
    """The Secret behind :data:`FEEDBACK`."""
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "feedback"},
                                                   "stringData": {"token": FEEDBACK_TOKEN}})


# -- data ----------------------------------------------------------------------------------------

def rows(n: int, *, shift: float = 0.0, seed: int = 0) -> tuple[list[dict[str, float]], list[int]]:
    """``n`` instances and their true labels; ``shift`` moves features a and b (c never moves)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(shift, 1, n), rng.normal(shift, 1, n), rng.normal(0, 1, n)
    y = (a + b - 2 * shift + rng.normal(0, 0.5, n) > 0).astype(int)
    instances = [{"a": round(float(x), 4), "b": round(float(z), 4), "c": round(float(w), 4)}
                 for x, z, w in zip(a, b, c, strict=True)]
    return instances, y.tolist()


def csv_bytes(instances: list[dict[str, float]], labels: list[int] | list[float]) -> bytes:
    lines = ["a,b,c,y"] + [f"{r['a']},{r['b']},{r['c']},{y}" for r, y in zip(instances, labels, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def train(*, dataset_uri: str, output_prefix: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Run the real trainer on the host (what a training Job runs); returns its JSON summary."""
    digest = subprocess.run(
        [PYTHON, "-c", f"from loopwright.jobs import data; print(data.fetch({dataset_uri!r}).digest)"],
        env=dict(env), check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    result = subprocess.run(
        [PYTHON, "-m", "loopwright.jobs.trainer", "--dataset-uri", dataset_uri, "--dataset-digest", digest,
         "--schema-json", json.dumps(SCHEMA), "--estimator", "LogisticRegression",
         "--metrics", "accuracy", "--output-prefix", output_prefix],
        env=dict(env), check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


# -- objects -------------------------------------------------------------------------------------

def model_version(*, model: str, version: int, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v{version}", "labels": {"loopwright.dev/model": model}},
        "spec": {
            "model": model, "version": version,
            "artifact": {"uri": summary["modelUri"], "sha256": summary["modelSha256"], "format": "skops"},
            "metrics": summary["metrics"],
            "profileUri": summary["profileUri"], "profileSha256": summary["profileSha256"],
        },
    }


def ready_pods(kube: Any, namespace: str, *, deployment: str, version: int) -> list[str]:
    """Names of the Ready predictor pods of one version (reach them with `forward_pods`)."""
    selector = f"loopwright.dev/deployment={deployment},loopwright.dev/version={version}"
    out = []
    for pod in kube.core.list_namespaced_pod(namespace, label_selector=selector).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())
        if ready and pod.metadata.deletion_timestamp is None:
            out.append(pod.metadata.name)
    return sorted(out)


def forward_pods(kube: Any, namespace: str, pods: list[str], stack: ExitStack) -> list[str]:
    """Each pod's port 8080 on 127.0.0.1 (kubectl port-forward, closed with `stack`): pods are
    not routable from the host, and prediction ids are per pod, so each is reached on its own."""
    return [stack.enter_context(kube.port_forward(namespace, f"pod/{pod}", 8080)) for pod in pods]


def get(kube: Any, plural: str, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return obj


def retrain_request(kube: Any, namespace: str, pipeline: str, *, token: str) -> dict[str, str]:
    """The pipeline's annotations once they carry the retrain `token`.

    The policy records the retrain in its status first and annotates the pipeline after (so a crash
    in between is completed with the same token), so the status alone does not mean the request landed.
    """
    def annotated() -> dict[str, str] | None:
        annotations = get(kube, "trainingpipelines", namespace, pipeline)["metadata"].get("annotations") or {}
        return annotations if annotations.get("loopwright.dev/train-request") == token else None

    found: dict[str, str] = kube.wait(annotated, timeout=30, what=f"retrain request {token} on {pipeline}")
    return found


def condition(obj: Mapping[str, Any], type_: str) -> tuple[str, str] | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return c["status"], c["reason"]
    return None


def event_reasons(kube: Any, namespace: str, name: str) -> list[str]:
    events = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [e.reason for e in events]


# -- traffic -------------------------------------------------------------------------------------

@dataclass
class Traffic:
    """Predictions sent straight to the predictor pods, remembered for feedback (ids are per pod)."""

    model: str
    served: list[tuple[str, str, int]] = field(default_factory=list)
    """(pod endpoint, prediction id, true label) per row."""

    def predict(self, endpoints: list[str], instances: list[dict[str, float]],
                labels: list[int]) -> list[Any]:
        """Round-robin over the pods' forwarded `host:port` endpoints (forward_pods)."""
        assert endpoints, "no ready predictor pods"
        predictions: list[Any] = []
        with httpx.Client(timeout=10) as client:
            for i, start in enumerate(range(0, len(instances), BATCH)):
                ip = endpoints[i % len(endpoints)]
                chunk = instances[start:start + BATCH]
                r = client.post(f"http://{ip}/v1/models/{self.model}:predict", json={"instances": chunk})
                assert r.status_code == 200, r.text
                body = r.json()
                predictions.extend(body["predictions"])
                truth = labels[start:start + BATCH]
                self.served.extend(zip([ip] * len(chunk), body["ids"], truth, strict=True))
        return predictions

    def feedback(self, *, flip: bool = False) -> int:
        """Send the true labels (or wrong ones) of everything predicted since the last call."""
        by_ip: dict[str, list[dict[str, Any]]] = {}
        for ip, pid, label in self.served:
            by_ip.setdefault(ip, []).append({"id": pid, "label": 1 - label if flip else label})
        self.served = []
        matched = 0
        with httpx.Client(timeout=10) as client:
            for ip, labels in by_ip.items():
                for start in range(0, len(labels), 500):
                    r = client.post(f"http://{ip}/v1/models/{self.model}/feedback",
                                    json={"labels": labels[start:start + 500]},
                                    headers={"authorization": f"Bearer {FEEDBACK_TOKEN}"})
                    assert r.status_code == 200, r.text
                    matched += r.json()["matched"]
        return matched


# -- webhook receiver ------------------------------------------------------------------------------

_RECEIVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        print(json.dumps({"auth": self.headers.get("Authorization"), "json": json.loads(body)}), flush=True)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *_):
        pass
HTTPServer(("", 8080), Handler).serve_forever()
"""


def start_webhook_receiver(kube: Any, namespace: str, *, name: str = "hook") -> str:
    """A pod and Service in the namespace that print each POST (JSON body, Authorization) as a
    line of their log (`received`); returns the URL the operator posts to."""
    labels = {"app": name}
    spec = restricted({"containers": [{
        "name": "receiver", "image": ML_IMAGE, "command": ["python", "-c", _RECEIVER],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]})
    kube.core.create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": labels}, "spec": spec})
    kube.core.create_namespaced_service(namespace, {"metadata": {"name": name}, "spec": {
        "selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})
    kube.wait(lambda: any(c.type == "Ready" and c.status == "True" for c in
                          kube.core.read_namespaced_pod(name, namespace).status.conditions or []),
              timeout=120, what="the webhook receiver to be ready")
    return f"http://{name}.{namespace}.svc/hook"


def received(kube: Any, namespace: str, *, name: str = "hook") -> list[dict[str, Any]]:
    return [json.loads(line) for line in kube.logs(namespace, name).splitlines() if line.startswith("{")]


def host_env(s3: Any, **extra: str) -> dict[str, str]:
    """Environment of the trainer run on the host: the cluster's S3 as the host reaches it."""
    return {**os.environ, "AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_DEFAULT_REGION": s3.region,
            "PYTHONPATH": str(REPO / "operator"), **extra}
