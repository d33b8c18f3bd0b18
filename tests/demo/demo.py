"""`make demo`: the whole Loopwright loop on a cluster, narrated while it runs.

  cluster -> install (CRDs, RBAC, the operator in-cluster) -> churn data v1 in S3 -> the GitOps
  samples (Dataset, TrainingPipeline, Deployment, DriftPolicy) -> Dataset validated -> run 1 ->
  churn-v1 validated -> served -> in-distribution traffic: no drift -> new labelled data from a
  changed population (Dataset v2) -> shifted traffic: drift detected -> retrain (trigger Drift)
  -> churn-v2 validated -> canary -> promoted -> the same traffic: no drift against v2.

Usage: python tests/demo/demo.py [--only-demo-namespace]

It first runs `make kind-up kind-load kind-deploy`: a Docker engine, kind, the node image and
Loopwright's images from this checkout, as far as they are missing (images/). The operator runs in
the cluster from the shipped manifests (manifests/overlays/kind).

Every object change is printed as one line (kind/name, phase, key figures); every wait has a
timeout and says what it was waiting for. The end is a summary: versions, metrics, rollout
steps and drift figures. The demo leaves everything running for `kubectl get loopwright -A`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import churn
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MANIFESTS = REPO / "manifests"
sys.path.insert(0, str(REPO / "tests"))  # the shared test helpers, as pytest's pythonpath has them
import kind_env  # noqa: E402

NAMESPACE = "loopwright-demo"
SYSTEM = "loopwright-system"
GROUP, VERSION = "loopwright.dev", "v1alpha1"
NAME = "churn"  # Dataset, pipeline, model, Deployment and DriftPolicy of the samples share it
BUCKET = "loopwright"
PREFIX = "demo/churn/"  # manifests/samples/dataset.yaml: s3://loopwright/demo/churn/
ML_IMAGE = "loopwright/ml:0.1.0"
CACHE_BIN = Path(os.environ.get("LOOPWRIGHT_CACHE", Path.home() / ".cache" / "loopwright")) / "bin"
KINDS = (("Dataset", "datasets"), ("TrainingPipeline", "trainingpipelines"),
         ("ModelVersion", "modelversions"), ("Deployment", "deployments"), ("DriftPolicy", "driftpolicies"))
T = TypeVar("T")


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what it was waiting for or what failed."""


def say(text: str) -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n== {title}")


# -- the cluster ------------------------------------------------------------------------------------


@dataclass
class Cluster:
    kubeconfig: str
    s3_endpoint: str  # as seen from this machine
    s3_key: str = ""
    s3_secret: str = ""


def _kind_cluster() -> Cluster:
    say("kind: make kind-up kind-load kind-deploy (what is missing is installed or built: a Docker engine,\n"
        "  kind, the node image, Loopwright's images; the first time takes about 20 minutes on 2 cores)")
    started = time.monotonic()
    if subprocess.run(["make", "-C", str(REPO), "kind-up", "kind-load", "kind-deploy"], check=False,
                      timeout=3600).returncode != 0:
        raise DemoError("bringing up kind failed (see the output above)")
    say(f"  kind cluster ready with Loopwright in {time.monotonic() - started:.0f}s")
    # kind's kubectl (built with the node image) first: the one on PATH may be out of version skew.
    os.environ["PATH"] = f"{CACHE_BIN}{os.pathsep}{os.environ['PATH']}"
    return Cluster(kubeconfig=kind_env.KIND_KUBECONFIG, s3_endpoint=kind_env.s3_endpoint())


def bring_up() -> Cluster:
    step("1. Cluster")
    return _kind_cluster()


# -- talking to it --------------------------------------------------------------------------------


@dataclass
class Kube:
    cluster: Cluster
    api: Any = None

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(config_file=self.cluster.kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        command = ["kubectl", f"--kubeconfig={self.cluster.kubeconfig}", *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False,
                                timeout=300)
        if result.returncode != 0:
            raise DemoError(f"`kubectl {' '.join(args)}` failed:\n{result.stderr.strip()}")
        return result.stdout

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, plural, name)
        except client.exceptions.ApiException as error:
            if error.status == 404:
                return None
            raise
        return obj

    def items(self, plural: str) -> list[dict[str, Any]]:
        result = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)
        return sorted(result["items"], key=lambda o: o["metadata"]["name"])


def status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def condition(obj: dict[str, Any] | None, type_: str) -> tuple[str, str]:
    for cond in status(obj).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("status")), str(cond.get("reason"))
    return "", ""


# -- progress: one line per change --------------------------------------------------------------


def _short(digest: str | None) -> str:
    return digest.split(":")[-1][:10] if digest else "-"


def summarize(kind: str, obj: dict[str, Any]) -> str:
    """The few figures that tell where an object is (what a line of progress shows)."""
    st = status(obj)
    ready = "/".join(condition(obj, "Ready"))
    if kind == "Dataset":
        return (f"version={_short(st.get('version'))} validated={_short(st.get('validatedVersion'))} "
                f"rows={st.get('rows', '-')} anomalies={len(st.get('anomalies') or [])} Ready={ready}")
    if kind == "TrainingPipeline":
        runs = st.get("runs") or []
        last = runs[0] if runs else {}
        run = (f"run {last.get('name')} {last.get('phase')} trigger={last.get('trigger')} "
               f"dataset={_short(last.get('datasetVersion'))} -> {last.get('modelVersion') or '-'}") if last \
            else "no run yet"
        return f"{run} Ready={ready}"
    if kind == "ModelVersion":
        metrics = obj.get("spec", {}).get("metrics") or {}
        figures = " ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()) if isinstance(v, int | float))
        aliases = ",".join(st.get("aliases") or []) or "-"
        return f"{st.get('phase') or 'Pending'} {figures} aliases={aliases} Ready={ready}"
    if kind == "Deployment":
        stable, canary = st.get("stable") or {}, st.get("canary") or {}
        text = (f"{st.get('phase') or '-'} stable=v{stable.get('version', '-')} "
                f"({stable.get('readyReplicas', 0)}/{stable.get('replicas', 0)} ready, "
                f"{stable.get('weight', 0)}%)")
        if canary:
            text += (f" canary=v{canary.get('version')} step={canary.get('step')} "
                     f"weight={canary.get('weight')}%/{canary.get('desiredWeight')}%")
        analysis = st.get("analysis") or {}
        if canary and analysis.get("verdict"):
            text += f" analysis={analysis.get('verdict')} checks={analysis.get('checks')} " \
                    f"failures={analysis.get('failures')}"
        return f"{text} Ready={ready}"
    if kind == "DriftPolicy":
        share = st.get("driftShare")
        drifted = [f["name"] for f in st.get("features") or [] if f.get("drifted")]
        return (f"against={st.get('modelVersion') or '-'} samples={st.get('samples', '-')} "
                f"driftShare={'-' if share is None else f'{share:.2f}'} drifted=[{','.join(drifted)}] "
                f"consecutive={st.get('consecutive', 0)} "
                f"DriftDetected={'/'.join(condition(obj, 'DriftDetected'))}")
    return ready


def restricted_violations(pod: Any) -> list[str]:
    """What keeps a pod from running non-root, read-only root, no capabilities, seccomp RuntimeDefault."""
    spec = pod.spec
    pod_sc = spec.security_context
    found = []
    for container in [*(spec.init_containers or []), *spec.containers]:
        sc = container.security_context
        non_root = (sc and sc.run_as_non_root) or (pod_sc and pod_sc.run_as_non_root)
        seccomp = (sc and sc.seccomp_profile) or (pod_sc and pod_sc.seccomp_profile)
        checks = {
            "non-root": bool(non_root),
            "read-only root": bool(sc and sc.read_only_root_filesystem),
            "no capabilities": bool(sc and sc.capabilities and "ALL" in (sc.capabilities.drop or [])
                                    and not sc.capabilities.add),
            "no privilege escalation": sc is not None and sc.allow_privilege_escalation is False,
            "seccomp RuntimeDefault": bool(seccomp and seccomp.type == "RuntimeDefault"),
        }
        found += [f"{container.name}: not {what}" for what, ok in checks.items() if not ok]
    return found


class Progress(threading.Thread):
    """Polls the demo's objects and prints a line whenever one's summary changes."""

    def __init__(self, kube: Kube, started: float) -> None:
        super().__init__(daemon=True)
        self.kube, self.started = kube, started
        self.seen: dict[str, str] = {}
        self.rollout: list[tuple[float, str]] = []  # the Deployment's lines, for the summary
        self.analysis: list[dict[str, Any]] = []  # the last canary analysis results seen
        self.pods: dict[str, list[str]] = {}  # every pod Loopwright made -> its restricted-PSS gaps
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.poll()
            except Exception as error:
                say(f"   (progress: {error})")
            self.stop.wait(1.0)

    def poll(self) -> None:
        for namespace, selector in ((NAMESPACE, "app.kubernetes.io/managed-by=loopwright"),
                                    (SYSTEM, "app.kubernetes.io/name=loopwright-operator")):
            for pod in self.kube.core.list_namespaced_pod(namespace, label_selector=selector).items:
                self.pods.setdefault(f"{namespace}/{pod.metadata.name}", restricted_violations(pod))
        for kind, plural in KINDS:
            for obj in self.kube.items(plural):
                key = f"{kind}/{obj['metadata']['name']}"
                line = summarize(kind, obj)
                if kind == "Deployment" and status(obj).get("canary"):
                    self.analysis = (status(obj).get("analysis") or {}).get("results") or self.analysis
                if self.seen.get(key) != line:
                    self.seen[key] = line
                    at = time.monotonic() - self.started
                    if kind == "Deployment":
                        self.rollout.append((at, line))
                    say(f"  {at:6.0f}s  {key:<26} {line}")


# -- the loop ---------------------------------------------------------------------------------------


@dataclass
class Demo:
    kube: Kube
    s3: Any
    started: float
    reached: list[tuple[str, float]] = field(default_factory=list)
    drift_snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    traffic_jobs: int = 0

    def wait(self, what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 2.0) -> T:
        say(f"  ...  waiting for {what} (at most {timeout:.0f}s)")
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                self.reached.append((what, time.monotonic() - self.started))
                say(f"  {time.monotonic() - self.started:6.0f}s  ✓ {what}")
                return result
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)

    # -- S3 ---------------------------------------------------------------------------------------

    def put_data(self, name: str, *, rows: int, shift: float, seed: int) -> None:
        """Replace what is under the Dataset's prefix by one CSV object."""
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents") or []
        for item in listed:
            self.s3.delete_object(Bucket=BUCKET, Key=item["Key"])
        records, labels = churn.rows(rows, shift=shift, seed=seed)
        body = churn.csv_bytes(records, labels)
        self.s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=body)
        churned = labels.count("yes") / len(labels)
        say(f"  s3://{BUCKET}/{PREFIX}{name}: {rows} rows, {len(body)} bytes, churn rate {churned:.0%}"
            f"{' (replacing ' + ', '.join(i['Key'] for i in listed) + ')' if listed else ''}")

    # -- traffic ----------------------------------------------------------------------------------

    def traffic(self, label: str, *, rows: int, shift: float, seed: int, seconds: float = 240,
                repeat: bool = False, wait: bool = True) -> str:
        """A Job in the demo namespace that posts records to the `churn` Service."""
        self.traffic_jobs += 1
        name = f"traffic-{self.traffic_jobs}-{label}"
        url = f"http://{NAME}.{NAMESPACE}.svc/v1/models/{NAME}:predict"
        args = ["--url", url, "--rows", str(rows), "--shift", str(shift), "--seed", str(seed),
                "--seconds", str(seconds), *(["--repeat"] if repeat else [])]
        restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "demo-traffic"}},
               "spec": {"backoffLimit": 0, "activeDeadlineSeconds": int(seconds) + 60, "template": {"spec": {
                   "restartPolicy": "Never",
                   "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                       "seccompProfile": {"type": "RuntimeDefault"}},
                   "containers": [{"name": "traffic", "image": ML_IMAGE,
                                   "command": ["python", "/demo/traffic.py", *args],
                                   "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                                           {"name": "HOME", "value": "/tmp"}],
                                   "securityContext": restricted,
                                   "volumeMounts": [{"name": "demo", "mountPath": "/demo",
                                                     "readOnly": True}]}],
                   "volumes": [{"name": "demo", "configMap": {"name": "demo-traffic"}}]}}}}
        self.kube.batch.create_namespaced_job(NAMESPACE, job)
        shifted = f"shifted {shift:.0%}" if shift else "in-distribution"
        say(f"  traffic: Job {name}: {'continuous, ' if repeat else ''}{rows} {shifted} records, "
            "10 a request")
        if wait:
            self.finish_traffic(name, timeout=seconds + 90)
        return name

    def finish_traffic(self, name: str, *, timeout: float) -> None:
        def done() -> Any:
            job = self.kube.batch.read_namespaced_job_status(name, NAMESPACE)
            return job if (job.status.succeeded or job.status.failed) else None

        job = self.wait(f"traffic Job {name} to finish", done, timeout=timeout)
        pods = self.kube.core.list_namespaced_pod(NAMESPACE, label_selector=f"job-name={name}").items
        log = ""
        if pods:
            response = self.kube.core.read_namespaced_pod_log(pods[0].metadata.name, NAMESPACE,
                                                              _preload_content=False)
            log = bytes(response.data).decode().strip().splitlines()[-1:][0] if response.data else ""
        say(f"  traffic: {name} {'succeeded' if job.status.succeeded else 'FAILED'}: {log}")
        if not job.status.succeeded:
            raise DemoError(f"traffic Job {name} failed: {log}")

    def stop_traffic(self, name: str) -> None:
        self.kube.batch.delete_namespaced_job(name, NAMESPACE, propagation_policy="Background")

    def drift_snapshot(self, label: str) -> dict[str, Any]:
        obj = self.kube.get("driftpolicies", NAME)
        self.drift_snapshots[label] = dict(status(obj))
        return self.drift_snapshots[label]


def install(kube: Kube, *, only_demo_namespace: bool) -> None:
    say("  the operator in the cluster (the shipped manifests)")
    overlay = MANIFESTS / "overlays" / "kind"
    say(f"  kubectl apply --server-side -k {overlay.relative_to(REPO)}")
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay))
    if only_demo_namespace:
        kube.kubectl("-n", SYSTEM, "patch", "configmap", "loopwright-config", "--type=merge",
                     "-p", json.dumps({"data": {"LOOPWRIGHT_NAMESPACES": NAMESPACE}}))
        say(f"  the operator watches only {NAMESPACE} (--only-demo-namespace)")
    # A restart picks up the configuration, and starts the operator with nothing in memory of
    # an earlier demo's objects (same names, just deleted).
    kube.kubectl("-n", SYSTEM, "rollout", "restart", "deployment/loopwright-operator")


def operator_ready(kube: Kube) -> bool:
    pods = kube.core.list_namespaced_pod(SYSTEM, label_selector="app.kubernetes.io/name=loopwright-operator")
    return any(p.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in pods.items)


def delete_earlier_demo(kube: Kube, demo: Demo) -> None:
    try:
        kube.core.read_namespace(NAMESPACE)
        say(f"  deleting the {NAMESPACE} of an earlier demo")
        kube.core.delete_namespace(NAMESPACE)

        def gone() -> bool:
            try:
                kube.core.read_namespace(NAMESPACE)
            except client.exceptions.ApiException as error:
                return error.status == 404
            return False

        demo.wait(f"namespace {NAMESPACE} to be deleted", gone, timeout=180)
    except client.exceptions.ApiException as error:
        if error.status != 404:
            raise


def fresh_namespace(kube: Kube) -> None:
    step(f"3. A fresh namespace {NAMESPACE} with the S3 credentials")
    kube.kubectl("apply", "--server-side", "-f", str(MANIFESTS / "samples" / "namespace.yaml"))
    # Jobs and predictors reference the credentials by name in their own namespace.
    source = kube.core.read_namespaced_secret("loopwright-s3", SYSTEM)
    kube.core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "loopwright-s3"},
                                                   "data": source.data})
    scripts = {name: (HERE / name).read_text() for name in ("churn.py", "traffic.py")}
    kube.core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": "demo-traffic"}, "data": scripts})
    if not kube.cluster.s3_key:
        kube.cluster.s3_key = base64.b64decode(source.data["AWS_ACCESS_KEY_ID"]).decode()
        kube.cluster.s3_secret = base64.b64decode(source.data["AWS_SECRET_ACCESS_KEY"]).decode()
    say("  Secret loopwright-s3 copied from loopwright-system; ConfigMap demo-traffic (the traffic script)")


def run_loop(demo: Demo) -> None:
    kube = demo.kube

    def mv(version: int) -> dict[str, Any] | None:
        return kube.get("modelversions", f"{NAME}-v{version}")

    def validated(version: int) -> Callable[[], bool]:
        return lambda: status(mv(version)).get("phase") == "Validated"

    def serving(version: int) -> Callable[[], bool]:
        def probe() -> bool:
            st = status(kube.get("deployments", NAME))
            stable = st.get("stable") or {}
            return (st.get("phase") == "Stable" and stable.get("version") == version and not st.get("canary")
                    and stable.get("readyReplicas", 0) >= 1)
        return probe

    def all_ready() -> bool:
        stable = status(kube.get("deployments", NAME)).get("stable") or {}
        return bool(stable.get("replicas")) and stable.get("readyReplicas") == stable.get("replicas")

    def baseline(version: int) -> None:
        """Wait for a check that read every predictor pod: a pod's first reading is its baseline, so
        traffic it served before that is not in the window (the DriftPolicy's documented rule)."""
        demo.wait(f"every predictor pod of v{version} ready", all_ready, timeout=180)
        seen = status(kube.get("driftpolicies", NAME)).get("lastCheckTime")
        demo.wait(f"a DriftPolicy check with every v{version} pod in it (its baseline)",
                  lambda: status(kube.get("driftpolicies", NAME)).get("lastCheckTime") not in (None, seen),
                  timeout=120)

    def judged(expected: tuple[str, str]) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            obj = kube.get("driftpolicies", NAME)
            return obj if condition(obj, "DriftDetected") == expected else None
        return probe

    def dataset_validated(previous: str | None) -> Callable[[], str | None]:
        def probe() -> str | None:
            st = status(kube.get("datasets", NAME))
            version = st.get("validatedVersion")
            return version if version and version != previous and st.get("version") == version else None
        return probe

    step("4. Data v1 (today's customers) to S3")
    demo.put_data("part-0001.csv", rows=3000, shift=0.0, seed=1)

    step("5. The GitOps samples: kubectl apply --server-side -k manifests/samples")
    say("  " + kube.kubectl("apply", "--server-side", "-k", str(MANIFESTS / "samples")).strip()
        .replace("\n", "\n  "))
    dataset_v1 = demo.wait("Dataset churn v1 validated", dataset_validated(None), timeout=240)
    demo.wait("ModelVersion churn-v1 Validated (run churn-1, trigger NewData)", validated(1), timeout=420)
    demo.wait("Deployment churn serving v1", serving(1), timeout=300)

    step("6. In-distribution traffic: no drift")
    baseline(1)
    demo.traffic("v1-normal", rows=600, shift=0.0, seed=11, seconds=120)
    demo.wait("DriftPolicy: NoDrift on in-distribution traffic", judged(("False", "NoDrift")), timeout=120)
    demo.drift_snapshot("v1, in-distribution traffic")

    step("7. The world changes: labelled data of the new population arrives (Dataset v2)")
    demo.put_data("part-0002.csv", rows=3000, shift=1.0, seed=2)
    demo.wait("Dataset churn v2 validated (within the pipeline's cooldown: no training yet)",
              dataset_validated(dataset_v1), timeout=240)

    step("8. Live traffic shifts: drift detected, retraining requested")
    demo.traffic("v1-shifted", rows=1500, shift=1.0, seed=12, seconds=150)
    demo.wait("DriftPolicy: DriftDetected (DriftConfirmed)", judged(("True", "DriftConfirmed")), timeout=180)
    demo.drift_snapshot("v1, shifted traffic")

    def drift_run() -> dict[str, Any] | None:
        runs = status(kube.get("trainingpipelines", NAME)).get("runs") or []
        return next((r for r in runs if r.get("trigger") == "Drift"), None)

    run = demo.wait("a training run with trigger Drift", drift_run, timeout=120)
    say(f"  run {run.get('name')} on dataset {_short(run.get('datasetVersion'))}")

    step("9. Retraining: churn-v2 validated against the champion (churn-v1 in production)")
    demo.wait("ModelVersion churn-v2 Validated", validated(2), timeout=480)

    step("10. Canary: v2 gets part of the traffic, analysis, promotion")
    background = demo.traffic("canary", rows=1000, shift=1.0, seed=20, seconds=420, repeat=True, wait=False)
    try:
        demo.wait("Deployment churn promoted to v2", serving(2), timeout=420)
    finally:
        demo.stop_traffic(background)

    step("11. The same shifted traffic against the new reference: drift clears")
    demo.wait("DriftPolicy to follow the promotion (reference churn-v2)",
              lambda: status(kube.get("driftpolicies", NAME)).get("modelVersion") == f"{NAME}-v2",
              timeout=120)
    baseline(2)
    demo.traffic("v2-shifted", rows=800, shift=1.0, seed=14, seconds=120)
    demo.wait("DriftPolicy: NoDrift against churn-v2", judged(("False", "NoDrift")), timeout=120)
    demo.drift_snapshot("v2, shifted traffic")


# -- the summary ------------------------------------------------------------------------------------


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary(demo: Demo, progress: Progress) -> None:
    kube = demo.kube
    step("Summary")
    say("Model versions:")
    for obj in kube.items("modelversions"):
        spec, st = obj.get("spec", {}), status(obj)
        lineage = spec.get("lineage") or {}
        metrics = " ".join(f"{k}={v:.3f}" for k, v in sorted((spec.get("metrics") or {}).items())
                           if isinstance(v, int | float))
        champion = st.get("champion") or {}
        versus = f" vs champion {champion.get('name')} {champion.get('value')}" if champion else ""
        say(f"  {obj['metadata']['name']:<10} {st.get('phase', '-'):<10} {metrics}{versus}  "
            f"dataset={_short((lineage.get('dataset') or {}).get('version'))} "
            f"run={(lineage.get('pipeline') or {}).get('run', '-')} aliases={st.get('aliases') or []}")
    say("Training runs:")
    for run in reversed(status(kube.get("trainingpipelines", NAME)).get("runs") or []):
        say(f"  {run.get('name'):<10} trigger={run.get('trigger'):<7} {run.get('phase'):<10} "
            f"dataset={_short(run.get('datasetVersion'))} -> {run.get('modelVersion') or '-'}")
    deployment = status(kube.get("deployments", NAME))
    say("Rollout steps (Deployment churn as it changed):")
    for at, line in progress.rollout:
        say(f"  {at:6.0f}s  {line}")
    say("Rollout history:")
    for event in deployment.get("history") or []:
        say(f"  v{event.get('version')} {event.get('event')} at {event.get('time')} "
            f"{event.get('message', '')}")
    for result in progress.analysis:
        say(f"  analysis {result.get('metric')}: canary={result.get('value')} "
            f"stable={result.get('stableValue')} "
            f"threshold={result.get('threshold')} {result.get('verdict')}")
    say("Drift (statistic / threshold per feature):")
    for label, st in demo.drift_snapshots.items():
        figures = "  ".join(f"{f['name']}({f.get('method')})={_figure(f.get('statistic'))}"
                            f"/{f.get('threshold')}{'*' if f.get('drifted') else ''}"
                            for f in st.get("features") or [])
        say(f"  {label:<30} samples={st.get('samples')} driftShare={st.get('driftShare')} {figures}")
    say("Pod Security (enforced by the API server's admission, run by the kubelet and containerd):")
    for namespace in (SYSTEM, NAMESPACE):
        labels = kube.core.read_namespace(namespace).metadata.labels or {}
        say(f"  namespace {namespace}: enforce={labels.get('pod-security.kubernetes.io/enforce', '-')}")
    gaps = {name: found for name, found in progress.pods.items() if found}
    say(f"  {len(progress.pods)} pods of Loopwright seen (operator, Jobs, predictors): "
        + ("all non-root, read-only root, no capabilities, no privilege escalation, seccomp RuntimeDefault"
           if not gaps else f"{len(gaps)} fall short"))
    for name, found in gaps.items():
        say(f"    {name}: {', '.join(found)}")
    say("Milestones:")
    for what, at in demo.reached:
        say(f"  {at:6.0f}s  {what}")
    say(f"\nEverything is still running: kubectl get loopwright -n {NAMESPACE}")


def _dump_state(kube: Kube) -> None:
    say("\nState when the demo stopped:")
    for kind, plural in KINDS:
        for obj in kube.items(plural):
            conditions = " ".join(f"{c['type']}={c['status']}/{c.get('reason')}"
                                  for c in status(obj).get("conditions") or [])
            say(f"  {kind}/{obj['metadata']['name']}: {summarize(kind, obj)}\n      {conditions}")
    try:
        say("Operator log (last 25 lines):\n" + kube.kubectl(
            "-n", SYSTEM, "logs", "deployment/loopwright-operator", "--tail=25"))
    except DemoError as error:
        say(f"  (no in-cluster operator log: {error})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-demo-namespace", action="store_true",
                        help=f"let the operator watch only {NAMESPACE} (on a cluster shared with other work)")
    args = parser.parse_args()
    started = time.monotonic()
    say("Loopwright demo: data -> training -> validation -> canary -> drift -> retraining")
    try:
        cluster = bring_up()
    except DemoError as error:
        say(f"\nDemo stopped: {error}")
        return 1
    kube = Kube(cluster)
    demo = Demo(kube=kube, s3=None, started=started)
    progress = Progress(kube, started)
    try:
        step("2. Install Loopwright")
        delete_earlier_demo(kube, demo)
        install(kube, only_demo_namespace=args.only_demo_namespace)
        say("  " + kube.kubectl("-n", SYSTEM, "rollout", "status", "deployment/loopwright-operator",
                                "--timeout=240s").strip().splitlines()[-1])
        demo.wait("the operator pod to be Ready", lambda: operator_ready(kube), timeout=240)
        fresh_namespace(kube)
        # On kind the credentials are the overlay's Secret, known only now.
        demo.s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint, region_name="us-east-1",
                               aws_access_key_id=cluster.s3_key, aws_secret_access_key=cluster.s3_secret)
        progress.start()
        run_loop(demo)
    except DemoError as error:
        progress.stop.set()
        say(f"\nDemo stopped: {error}\nreached: " + " -> ".join(w for w, _ in demo.reached))
        _dump_state(kube)
        return 1
    finally:
        progress.stop.set()
    progress.join(timeout=5)
    summary(demo, progress)
    say(f"\nThe loop closed in {time.monotonic() - started:.0f}s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
