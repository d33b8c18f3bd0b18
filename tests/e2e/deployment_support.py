"""Shared pieces of the Deployment (canary) e2e tests: real models, traffic, waits.

Models are trained here with scikit-learn and stored with loopwright.artifacts next to
a reference profile built with loopwright.core.profile, exactly what the predictor loads.
Each misbehaves for a real reason, never a flag:

* ``erroring``: a real classifier whose profile declares a regression task; the
  predictor cannot turn its class labels into numbers, so every prediction is a 500;
* ``slow``: a k-nearest-neighbours classifier searching 1,000,000 training rows by brute
  force (a hand-registered model outside the trainer's allow-list, so it has no compiled form
  and scikit-learn's own predict serves it): 15 to 30 ms per request, far more under load,
  against a 10 ms bound;
* ``drifting``: trained on shifted labels, it answers "yes" far less often than stable.

ModelVersions are created by hand and validated by the real ModelVersion controller
(artifact verification Job) of the operator under test (the ``operator`` fixture: the in-cluster
operator, watching the test's namespace).
Traffic comes from a pod calling the Service by its cluster DNS name, one TCP connection per
request so that the Service spreads it over stable and canary pods.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from conftest import ML_IMAGE, restricted
from loopwright import artifacts, storage
from loopwright.api.schema import DatasetSchema
from loopwright.compiled import compiler, rows
from loopwright.core.profile import Profile, profile_categorical, profile_numeric

GROUP, VERSION = "loopwright.dev", "v1alpha1"
FEATURES = ("a", "b", "c")
CLASSES = ["no", "yes"]
CLIENT_IMAGE = ML_IMAGE
SCHEMA = {
    "label": {"name": "y", "task": "classification"},
    "columns": [{"name": n, "type": "numeric"} for n in FEATURES],
}


# -- models -------------------------------------------------------------------------------------


def data(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3))
    return x, x[:, 0] + x[:, 1] + rng.normal(0, 0.5, n)


def train(kind: str, *, seed: int = 0) -> tuple[Any, Profile]:
    """A fitted estimator (bare, on a numpy matrix of a, b, c) and its reference profile."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 (heavy, test-only)
    from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415

    x, score = data(1_000_000 if kind == "slow" else 2000, seed=seed)
    threshold = 1.5 if kind == "drifting" else 0.0
    y = np.where(score > threshold, "yes", "no")
    if kind == "slow":
        model = KNeighborsClassifier(n_neighbors=15, algorithm="brute").fit(x, y)
    else:
        model = LogisticRegression(random_state=seed).fit(x, y)
    predictions = model.predict(x[:2000])  # the reference predictions (a sample for "slow")
    schema = DatasetSchema.model_validate(SCHEMA)
    features = {name: profile_numeric(x[:, j]) for j, name in enumerate(FEATURES)}
    if kind == "erroring":
        # The profile (and its schema) say regression: the pipeline predicts class labels.
        schema = DatasetSchema.model_validate({**SCHEMA, "label": {"name": "y", "task": "regression"}})
        profile = Profile(
            rows=len(x),
            features=features,
            prediction=profile_numeric(score),
            schema=schema,
            task="regression",
        )
    else:
        profile = Profile(
            rows=len(x),
            features=features,
            schema=schema,
            task="classification",
            classes=CLASSES,
            prediction=profile_categorical(predictions, categories=CLASSES),
        )
    return model, profile


@dataclass(frozen=True)
class Stored:
    model_uri: str
    model_sha256: str
    profile_uri: str
    profile_sha256: str


def upload(s3: Any, *, model: Any, profile: Profile, prefix: str) -> Stored:
    client = s3.client()
    blob = artifacts.dumps(model)
    doc = json.dumps(profile.to_wire()).encode()
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/model.skops", Body=blob)
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/profile.json", Body=doc)
    return Stored(
        model_uri=f"s3://{s3.bucket}/{prefix}/model.skops",
        model_sha256=storage.sha256_hex(blob),
        profile_uri=f"s3://{s3.bucket}/{prefix}/profile.json",
        profile_sha256=storage.sha256_hex(doc),
    )


def model_version(*, model: str, version: int, stored: Stored) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v{version}", "labels": {"loopwright.dev/model": model}},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {"uri": stored.model_uri, "sha256": stored.model_sha256, "format": "skops"},
            "profileUri": stored.profile_uri,
            "profileSha256": stored.profile_sha256,
        },
    }


def register(
    kube: Any, s3: Any, namespace: str, *, model: str, version: int, kind: str, wait: bool = True
) -> None:
    """Train, upload, create the ModelVersion and wait until the ModelVersion controller validated it."""
    estimator, profile = train(kind, seed=version)
    stored = upload(s3, model=estimator, profile=profile, prefix=f"e2e/{namespace}/{model}/v{version}")
    kube.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions", model_version(model=model, version=version, stored=stored)
    )
    if wait:
        kube.wait(
            lambda: phase(kube, namespace, "modelversions", f"{model}-v{version}") == "Validated",
            timeout=180,
            what=f"ModelVersion {model}-v{version} to be Validated",
            interval=1,
        )


def register_compiled(
    kube: Any, s3: Any, namespace: str, *, model: str, version: int, compiled_from: str = "good",
    wait: bool = True,
) -> None:
    """A "good" ModelVersion with a compiled form and its hold-out rows, as the trainer writes them
    for the estimators it compiles (the compiled form of the ``compiled_from`` model: another one
    than "good" answers differently). Its predictors serve the compiled form with numpy alone, not
    scikit-learn. ``wait``: until validated with the compiled form verified."""
    estimator, profile = train("good", seed=version)
    prefix = f"e2e/{namespace}/{model}/v{version}"
    stored = upload(s3, model=estimator, profile=profile, prefix=prefix)
    source = estimator if compiled_from == "good" else train(compiled_from, seed=version)[0]
    compiled = compiler.dumps(source)
    x, _ = data(500, seed=100 + version)
    holdout = rows.dumps(rows.Rows(FEATURES, FEATURES, x, {}))
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/model.lwc", Body=compiled)
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/holdout.lwr", Body=holdout)
    manifest = model_version(model=model, version=version, stored=stored)
    manifest["spec"]["compiled"] = {
        "uri": f"s3://{s3.bucket}/{prefix}/model.lwc", "sha256": storage.sha256_hex(compiled),
        "holdoutUri": f"s3://{s3.bucket}/{prefix}/holdout.lwr", "holdoutSha256": storage.sha256_hex(holdout),
    }
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", manifest)
    if not wait:
        return

    def validated() -> dict[str, Any] | None:
        obj = get(kube, namespace, "modelversions", f"{model}-v{version}")
        done = condition(obj, "CompiledVerified") and (obj.get("status") or {}).get("phase") == "Validated"
        return obj if done else None

    obj: dict[str, Any] = kube.wait(validated, timeout=240, what=f"ModelVersion {model}-v{version} validated",
                                    interval=1)
    verified = condition(obj, "CompiledVerified") or {}
    assert verified.get("status") == "True", f"{model}-v{version}: compiled form not verified: {verified}"


# -- objects ------------------------------------------------------------------------------------


def get(kube: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return obj


def phase(kube: Any, namespace: str, plural: str, name: str) -> str | None:
    return (get(kube, namespace, plural, name).get("status") or {}).get("phase")


def deployment(
    name: str, *, model: str, rollout: Mapping[str, Any], version: int | str = "latest", replicas: int = 1
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"model": model, "version": version, "replicas": replicas, "rollout": dict(rollout)},
    }


def patch_rollout(kube: Any, namespace: str, name: str, rollout: Mapping[str, Any]) -> None:
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "deployments", name, {"spec": {"rollout": dict(rollout)}}
    )


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)


def events(kube: Any, namespace: str, name: str) -> list[Any]:
    found = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return sorted(found, key=lambda e: (e.first_timestamp or e.event_time or 0, e.metadata.name))


def events_once(kube: Any, namespace: str, name: str, *, reason: str, type_: str = "") -> list[Any]:
    """The object's Events once one has `reason` (and `type_`): the operator posts an Event after the
    status write that announced it, so the status alone does not mean the Event is there."""
    def probe() -> list[Any] | None:
        found = events(kube, namespace, name)
        return found if any(e.reason == reason and type_ in ("", e.type) for e in found) else None

    found: list[Any] = kube.wait(probe, timeout=30, what=f"a {type_ or 'any'} {reason} Event on {name}")
    return found


def workloads(kube: Any, namespace: str, name: str) -> dict[str, int]:
    """apps/v1 Deployments of the loopwright Deployment, with their replicas (terminating ones left out)."""
    items = kube.apps.list_namespaced_deployment(
        namespace, label_selector=f"loopwright.dev/deployment={name}"
    )
    return {d.metadata.name: d.spec.replicas for d in items.items if d.metadata.deletion_timestamp is None}


def wait_phase(kube: Any, namespace: str, name: str, expected: str, *, timeout: float) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(kube, namespace, "deployments", name)
        return obj if (obj.get("status") or {}).get("phase") == expected else None

    try:
        return kube.wait(probe, timeout=timeout, what=f"Deployment {name} phase {expected}", interval=1)
    except BaseException:
        print(json.dumps(get(kube, namespace, "deployments", name).get("status"), indent=1)[:6000])
        raise


def wait_serving(kube: Any, namespace: str, name: str, *, timeout: float) -> dict[str, Any]:
    """Phase Stable and Ready=True: a pod of the stable version is ready behind the Service."""

    def probe() -> dict[str, Any] | None:
        obj = get(kube, namespace, "deployments", name)
        ready = condition(obj, "Ready")
        serving = ready is not None and ready["status"] == "True"
        return obj if serving and (obj.get("status") or {}).get("phase") == "Stable" else None

    return kube.wait(probe, timeout=timeout, what=f"Deployment {name} serving", interval=1)


# -- traffic ------------------------------------------------------------------------------------

_CLIENT = r"""
import json, random, sys, time, http.client
host, model = sys.argv[1], sys.argv[2]
seconds, pause, shift = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
codes, errors, n, late = {}, [], 0, 0  # late: failures after the first answer
deadline = time.monotonic() + seconds
rng = random.Random(7)
def summary():
    return json.dumps({"n": n, "codes": codes, "errors": errors[:10] + errors[-10:], "failed": len(errors),
                       "failed_after_first_answer": late})
reported = time.monotonic()
while time.monotonic() < deadline and n < 20000:
    if time.monotonic() - reported > 2:  # the running totals, for stop_client
        print(summary(), flush=True)
        reported = time.monotonic()
    rows = [{"a": round(rng.gauss(shift, 1), 4), "b": round(rng.gauss(shift, 1), 4),
             "c": round(rng.gauss(0, 1), 4)} for _ in range(5)]
    body = json.dumps({"instances": rows})
    try:
        conn = http.client.HTTPConnection(host, 80, timeout=10)  # one connection per request
        conn.request("POST", f"/v1/models/{model}:predict", body, {"Content-Type": "application/json"})
        code = conn.getresponse().status
        conn.close()
        codes[str(code)] = codes.get(str(code), 0) + 1
    except Exception as exc:
        errors.append(f"{time.strftime('%H:%M:%S', time.gmtime())} {type(exc).__name__}: {exc}")
        late += bool(codes)
    n += 1
    time.sleep(pause)
print(summary(), flush=True)
"""


def start_client(
    kube: Any,
    namespace: str,
    *,
    service: str,
    model: str,
    seconds: float,
    pause: float = 0.02,
    shift: float = 0.0,
    name: str = "client",
) -> str:
    """A pod sending predictions to the Service for ``seconds`` (bounded), then printing a JSON summary.

    Features a, b, c ~ N(0, 1); ``shift`` moves the means of a and b (drift_support.rows' shift).
    """
    host = f"{service}.{namespace}.svc.cluster.local"
    kube.core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": restricted({
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": CLIENT_IMAGE,
                        "command": ["python", "-c", _CLIENT, host, model, str(seconds), str(pause),
                                    str(shift)],
                    }
                ],
            }),
        },
    )
    return name


def serve_under_traffic(
    kube: Any, s3: Any, namespace: str, *, model: str, rollout: Mapping[str, Any], seconds: float
) -> str:
    """Version 1 of ``model`` served by a Deployment of the same name, with a client pod sending to it.

    The set-up of every rollout test: the next version registered after this becomes the canary
    while the client's requests measure what users saw. Returns the client pod's name.
    """
    register(kube, s3, namespace, model=model, version=1, kind="good")
    kube.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "deployments", deployment(model, model=model, rollout=rollout)
    )
    wait_serving(kube, namespace, model, timeout=120)
    return start_client(kube, namespace, service=model, model=model, seconds=seconds)


def stop_client(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    """What a client has seen so far (it prints running totals every 2 s); then the pod is deleted.

    The tests that measure what users saw during a rollout start a client with a generous bound and
    stop it once the rollout is decided, so a slow machine never leaves the canary without traffic.
    """
    lines = [line for line in kube.logs(namespace, name).splitlines() if line.startswith("{")]
    kube.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    assert lines, f"client {name} reported nothing"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def client_result(kube: Any, namespace: str, name: str, *, timeout: float) -> dict[str, Any]:
    def finished() -> Any:
        pod = kube.core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in {"Succeeded", "Failed"} else None

    kube.wait(finished, timeout=timeout, what=f"traffic pod {name} to finish", interval=1)
    lines = [line for line in kube.logs(namespace, name).splitlines() if line.startswith("{")]
    assert lines, kube.logs(namespace, name)
    result: dict[str, Any] = json.loads(lines[-1])
    return result
