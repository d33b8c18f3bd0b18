"""Shared pieces of the drift and loop e2e tests: data, training, predictor pods, traffic, the operator.

Run as ``python tests/e2e/drift_support.py <namespace>`` it is the operator with
only the DriftPolicy handlers: the drift tests create the predictor pods and
write the Deployment's status themselves, so the real Deployment controller
must not act on the same objects. The handlers go into a registry of their own;
the DriftPolicy code and the kopf settings are exactly the operator's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import kopf
import numpy as np

from loopwright.operator.main import configure_kopf

GROUP, VERSION = "loopwright.dev", "v1alpha1"
REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
FEATURES = ("a", "b", "c")
SCHEMA = {
    "label": {"name": "y", "task": "classification"},
    "columns": [{"name": n, "type": "numeric"} for n in FEATURES],
}
PREDICTOR_IMAGE = "loopwright/predictor:0.1.0"
BATCH = 50


# -- data ----------------------------------------------------------------------------------------

def rows(n: int, *, shift: float = 0.0, seed: int = 0) -> tuple[list[dict[str, float]], list[int]]:
    """``n`` instances and their true labels; ``shift`` moves features a and b (c never moves)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(shift, 1, n), rng.normal(shift, 1, n), rng.normal(0, 1, n)
    y = (a + b - 2 * shift + rng.normal(0, 0.5, n) > 0).astype(int)
    instances = [{"a": round(float(x), 4), "b": round(float(z), 4), "c": round(float(w), 4)}
                 for x, z, w in zip(a, b, c, strict=True)]
    return instances, y.tolist()


def csv_bytes(instances: list[dict[str, float]], labels: list[int]) -> bytes:
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


def predictor(*, deployment: str, model: str, version: int, summary: Mapping[str, Any], replicas: int,
              s3_endpoint: str, secret: str) -> dict[str, Any]:
    """An apps/v1 Deployment of predictor pods labelled as the Deployment controller labels them."""
    labels = {"loopwright.dev/deployment": deployment, "loopwright.dev/version": str(version)}
    env = {
        "LOOPWRIGHT_MODEL_NAME": model, "LOOPWRIGHT_MODEL_VERSION": str(version),
        "LOOPWRIGHT_MODEL_URI": summary["modelUri"], "LOOPWRIGHT_MODEL_SHA256": summary["modelSha256"],
        "LOOPWRIGHT_PROFILE_URI": summary["profileUri"],
        "LOOPWRIGHT_PROFILE_SHA256": summary["profileSha256"],
        "AWS_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1", "PORT": "8080",
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{deployment}-v{version}", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{
                    "name": "predictor", "image": PREDICTOR_IMAGE,
                    "command": ["python", "-m", "loopwright.serving"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [{"name": k, "value": v} for k, v in env.items()] + [
                        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}}
                        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")],
                    "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080},
                                       "periodSeconds": 1, "failureThreshold": 2},
                }],
            }},
        },
    }


def ready_pod_ips(kube: Any, namespace: str, *, deployment: str, version: int) -> list[str]:
    selector = f"loopwright.dev/deployment={deployment},loopwright.dev/version={version}"
    out = []
    for pod in kube.core.list_namespaced_pod(namespace, label_selector=selector).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())
        if ready and pod.status.pod_ip and pod.metadata.deletion_timestamp is None:
            out.append(pod.status.pod_ip)
    return sorted(out)


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
    """(pod ip, prediction id, true label) per row."""

    def predict(self, ips: list[str], instances: list[dict[str, float]], labels: list[int]) -> list[Any]:
        assert ips, "no ready predictor pods"
        predictions: list[Any] = []
        with httpx.Client(timeout=10) as client:
            for i, start in enumerate(range(0, len(instances), BATCH)):
                ip = ips[i % len(ips)]
                chunk = instances[start:start + BATCH]
                r = client.post(f"http://{ip}:8080/v1/models/{self.model}:predict", json={"instances": chunk})
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
                    r = client.post(f"http://{ip}:8080/v1/models/{self.model}/feedback",
                                    json={"labels": labels[start:start + 500]})
                    assert r.status_code == 200, r.text
                    matched += r.json()["matched"]
        return matched


# -- webhook receiver and operator process -----------------------------------------------------

@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server on loopback recording every POST (JSON body and Authorization header)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append({"auth": self.headers.get("Authorization"), "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class DriftOperator:
    """The DriftPolicy-only operator as a process for one namespace; restartable (SIGKILL = a crash)."""

    namespace: str
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([PYTHON, str(Path(__file__)), self.namespace], env=dict(self.env),
                                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        time.sleep(1)
        assert self.process.poll() is None, self.log.read_text()

    def stop(self, *, kill: bool = False) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def drift_operator(namespace: str, *, env: Mapping[str, str], log: Path) -> Iterator[DriftOperator]:
    handle = DriftOperator(namespace=namespace, env=env, log=log)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def host_env(s3: Any, **extra: str) -> dict[str, str]:
    """Environment of host processes (trainer, operator): the cluster's kubeconfig and S3."""
    return {**os.environ, "AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_DEFAULT_REGION": s3.region,
            "PYTHONPATH": str(REPO / "operator"), **extra}


def registry() -> kopf.OperatorRegistry:
    """The DriftPolicy handlers only (ids ``driftpolicy.*``), with the operator's kopf settings.

    Importing the controllers registers every kind's handlers in kopf's default registry;
    this copies the DriftPolicy ones and kopf's login into a fresh registry.
    """
    default = kopf.get_default_registry()
    reg = kopf.OperatorRegistry()
    for part in ("_activities", "_watching", "_spawning", "_changing"):
        for handler in getattr(default, part).get_all_handlers():
            if handler.id.startswith("driftpolicy.") or handler.id.startswith("login_via_"):
                getattr(reg, part).append(handler)

    @kopf.on.startup(registry=reg, id="e2e.settings")
    def settings(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings)

    return reg


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kopf.run(registry=registry(), standalone=True, namespaces=[sys.argv[1]])
