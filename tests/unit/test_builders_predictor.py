"""Manifests of the serving objects: names, selectors, the predictor contract, restricted pods."""

from __future__ import annotations

from typing import Any

from loopwright.api.deployment import DeploymentSpec
from loopwright.operator.builders import predictor as build
from loopwright.operator.builders.common import Owner

OWNER = Owner(kind="Deployment", name="iris", uid="uid-1", namespace="ml")
SERVED = build.Served(
    model="iris",
    version=3,
    model_version="iris-v3",
    artifact_uri="s3://loopwright/m.skops",
    artifact_sha256="a" * 64,
    profile_uri="s3://loopwright/p.json",
    profile_sha256="b" * 64,
)
SETTINGS = build.PodSettings(
    image="loopwright/predictor:0.1.0",
    s3_endpoint="http://s3.loopwright-system.svc:9000",
    credentials_secret="loopwright-s3",
    artifact_bucket="loopwright",
)


def _deployment(**spec: Any) -> dict[str, Any]:
    parsed = DeploymentSpec.model_validate({"model": "iris", **spec})
    return build.deployment(owner=OWNER, spec=parsed, served=SERVED, replicas=2, settings=SETTINGS)


def test_workload_name_labels_selector_and_owner() -> None:
    d = _deployment()
    assert d["metadata"]["name"] == "iris-v3"
    assert d["metadata"]["namespace"] == "ml"
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"]["matchLabels"] == {
        "loopwright.dev/deployment": "iris",
        "loopwright.dev/version": "3",
    }
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "loopwright"
    assert labels["loopwright.dev/model"] == "iris"
    # The pod labels satisfy the selector (the API server rejects the Deployment otherwise).
    assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    owner = d["metadata"]["ownerReferences"][0]
    assert (owner["apiVersion"], owner["kind"], owner["uid"], owner["controller"]) == (
        "loopwright.dev/v1alpha1",
        "Deployment",
        "uid-1",
        True,
    )
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_predictor_contract_env_and_credentials_by_reference() -> None:
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["LOOPWRIGHT_MODEL_NAME"]["value"] == "iris"
    assert env["LOOPWRIGHT_MODEL_VERSION"]["value"] == "3"
    assert env["LOOPWRIGHT_MODEL_URI"]["value"] == "s3://loopwright/m.skops"
    assert env["LOOPWRIGHT_MODEL_SHA256"]["value"] == "a" * 64
    assert env["LOOPWRIGHT_PROFILE_URI"]["value"] == "s3://loopwright/p.json"
    assert env["LOOPWRIGHT_PROFILE_SHA256"]["value"] == "b" * 64
    assert env["PORT"]["value"] == "8080"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://s3.loopwright-system.svc:9000"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "loopwright-s3", "key": key}}}
    assert "LOOPWRIGHT_CAPTURE_URI" not in env
    assert container["command"] == ["loopwright-predictor"]


def test_capture_env_only_when_sampling() -> None:
    env = {
        e["name"]: e.get("value")
        for e in _deployment(capture={"fraction": 0.25})["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LOOPWRIGHT_CAPTURE_URI"] == "s3://loopwright/captures/ml/iris"
    assert env["LOOPWRIGHT_CAPTURE_FRACTION"] == "0.25"


def test_the_feedback_token_is_a_mounted_secret_key_never_an_env_value() -> None:
    assert "LOOPWRIGHT_FEEDBACK_TOKEN_FILE" not in str(_deployment())
    d = _deployment(feedback={"tokenSecretRef": {"name": "iris-feedback", "key": "token"}})
    pod = d["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "feedback-token"]
    assert volume["secret"] == {"secretName": "iris-feedback", "items": [{"key": "token", "path": "token"}],
                                "defaultMode": 0o440}
    container = pod["containers"][0]
    assert {"name": "feedback-token", "mountPath": build.FEEDBACK_TOKEN_DIR, "readOnly": True} in \
        container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LOOPWRIGHT_FEEDBACK_TOKEN_FILE"] == {"name": "LOOPWRIGHT_FEEDBACK_TOKEN_FILE",
                                                     "value": f"{build.FEEDBACK_TOKEN_DIR}/token"}


def test_a_slow_start_is_not_killed_by_liveness() -> None:
    """A startup probe holds liveness back until the server first answers, for STARTUP_SECONDS:
    a CPU-starved node starting many predictors at once must not restart them before they listen."""
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    startup = container["startupProbe"]
    assert startup["httpGet"] == container["livenessProbe"]["httpGet"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == build.STARTUP_SECONDS >= 300
    # Once started, a hung process is still restarted after 3 missed 10 s probes.
    assert "initialDelaySeconds" not in container["livenessProbe"]
    assert container["livenessProbe"]["periodSeconds"] * container["livenessProbe"]["failureThreshold"] == 30


def test_probes_scrape_annotations_resources_and_restricted_security() -> None:
    d = _deployment(resources={"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}})
    pod = d["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "2", "memory": "512Mi"}}
    # The restricted Pod Security Standard, field by field.
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    pod_security = pod["spec"]["securityContext"]
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_security["runAsUser"] != 0
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["terminationGracePeriodSeconds"] > build.DRAIN_SECONDS


def test_service_pdb_and_url() -> None:
    svc = build.service(owner=OWNER, model="iris")
    assert svc["metadata"]["name"] == "iris"
    assert svc["spec"]["selector"] == {
        "loopwright.dev/deployment": "iris"
    }  # every version behind one Service
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    per_version = build.service(owner=OWNER, model="iris", version=3)
    assert per_version["metadata"]["name"] == "iris-v3"
    assert per_version["spec"]["selector"]["loopwright.dev/version"] == "3"
    pdb = build.disruption_budget(owner=OWNER, model="iris")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"loopwright.dev/deployment": "iris"}},
    }
    assert build.url(name="iris", namespace="ml") == "http://iris.ml.svc.cluster.local:80"


def test_grpc_port_on_the_pod_and_the_services_while_probes_stay_on_http() -> None:
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "grpc": 8081}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GRPC_PORT"] == "8081"
    assert container["readinessProbe"]["httpGet"]["port"] == 8080
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    services = [build.service(owner=OWNER, model="iris"), build.service(owner=OWNER, model="iris", version=3)]
    for svc in services:
        grpc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
        assert (grpc["port"], grpc["targetPort"], grpc["appProtocol"]) == (8081, 8081, "kubernetes.io/h2c")


def test_the_compiled_model_is_passed_only_when_given() -> None:
    def env(served: build.Served) -> dict[str, Any]:
        spec = DeploymentSpec.model_validate({"model": "iris"})
        d = build.deployment(owner=OWNER, spec=spec, served=served, replicas=1, settings=SETTINGS)
        return {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert "LOOPWRIGHT_COMPILED_URI" not in env(SERVED)
    compiled = build.Served(**{**SERVED.__dict__, "compiled": ("s3://loopwright/m.lwc", "c" * 64)})
    got = env(compiled)
    assert got["LOOPWRIGHT_COMPILED_URI"] == "s3://loopwright/m.lwc"
    assert got["LOOPWRIGHT_COMPILED_SHA256"] == "c" * 64
    assert got["LOOPWRIGHT_MODEL_URI"] == "s3://loopwright/m.skops"  # the skops file stays the record


def _pod(name: str, version: str, *, terminated: dict[str, Any] | None, last: bool = True) -> dict[str, Any]:
    ended = {"terminated": terminated} if terminated else {}
    running = {"running": {}}
    status = {"name": "predictor", "state": running if last else ended, "lastState": ended if last else {}}
    return {"metadata": {"name": name, "labels": {"loopwright.dev/version": version}},
            "status": {"containerStatuses": [status]}}


def test_a_predictor_that_cannot_load_its_model_is_named_in_the_condition() -> None:
    healthy = _pod("iris-v3-a", "3", terminated=None)
    reason = "cannot serve the model: compiled model s3://b/m.lwc: sha256 is 00, expected c0"
    failing = _pod("iris-v4-b", "4", terminated={"exitCode": 1, "message": f"starting\n{reason}\n"})
    drained = _pod("iris-v3-c", "3", terminated={"exitCode": 0, "message": "drained"}, last=False)
    verdict = build.model_loaded([healthy, drained, failing])
    assert (verdict.type, verdict.status, verdict.reason) == ("ModelLoaded", False, "ModelLoadFailed")
    assert verdict.message == f"version 4 (pod iris-v4-b): {reason}"
    ok = build.model_loaded([healthy, drained])
    assert (ok.status, ok.reason) == (True, "Loaded")
