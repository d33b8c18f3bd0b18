"""Manifests of a Deployment's serving objects: one apps/v1 Deployment per served version, the
Service in front of all of them, a PodDisruptionBudget, and per-version Services for Gateway API.

Names are deterministic (``<mld>-v<version>``), so promoting a canary needs no rename:
the canary's workload simply becomes the stable one. Pods follow the predictor
contract (environment, ``/v2/health`` probes and ``/metrics`` on the HTTP port, the v2
gRPC service on its own port, which the Services expose too) and the restricted Pod
Security Standard. S3 credentials reach the pod only by
``secretKeyRef`` to a Secret of the Deployment's namespace, named like the
operator's ``LOOPWRIGHT_S3_SECRET``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loopwright.api.common import ResourceRequirements
from loopwright.api.deployment import DeploymentSpec
from loopwright.api.labels import DEPLOYMENT_LABEL, MODEL_LABEL, MODEL_VERSION_LABEL, VERSION_LABEL
from loopwright.api.podtemplate import PodTemplate
from loopwright.api.reasons import MODEL_LOAD_FAILED
from loopwright.core.conditions import Verdict
from loopwright.operator.builders.common import (
    ACCESS_KEY,
    SECRET_KEY,
    Manifest,
    Owner,
    owner_reference,
    restricted_container_security,
    restricted_pod_security,
    scratch_mount,
    scratch_volume,
)
from loopwright.operator.builders.pods import Role, apply

PORT = 8080
SERVICE_PORT = 80
GRPC_PORT = 8081
"""The v2 gRPC port, on the pod and on the Services (KServe's and MLServer's convention)."""
CONTAINER = "predictor"
DRAIN_SECONDS = 15
"""The predictor keeps serving this long after SIGTERM while endpoints are withdrawn. kube-proxy sends
traffic to terminating pods while no pod is ready, so this is also how long a replacement may take to
be ready when every pod goes at once (its apps/v1 Deployment deleted: about 9 s on kind, fault suite)."""
TERMINATION_GRACE_SECONDS = 30
STARTUP_SECONDS = 300
"""How long a starting predictor may take to answer its liveness endpoint before kubelet restarts it
(a startup probe every 2 s); liveness and readiness are probed only after that first answer."""
FEEDBACK_TOKEN_DIR = "/var/run/secrets/loopwright/feedback"  # noqa: S105 (a mount path)
"""Where the feedback token's Secret key is mounted (file ``token``)."""
MODEL_LOADED = "ModelLoaded"
"""Condition: whether the predictor pods could load their model (False names the first refusal)."""

@dataclass(frozen=True, kw_only=True)
class Served:
    """One ModelVersion to serve, with what the predictor needs to load it."""

    model: str
    version: int
    model_version: str
    artifact_uri: str
    artifact_sha256: str
    profile_uri: str
    profile_sha256: str | None
    compiled: tuple[str, str] | None = None
    """URI and sha256 of the compiled model, once its verification proved it (served instead)."""
    image: str | None = None
    """The ModelVersion's own image (a factory's code lives there); None: the operator's ml image."""
    trusted_types: tuple[str, ...] = ()
    """Types the ModelVersion declares beyond the built-in list (its artifact's trustedTypes)."""


@dataclass(frozen=True, kw_only=True)
class PodSettings:
    """Operator-wide settings of predictor pods (from :mod:`loopwright.operator.config`)."""

    image: str
    s3_endpoint: str | None
    credentials_secret: str | None
    """Secret name (in the Deployment's namespace) with the two AWS keys, or None."""
    artifact_bucket: str
    pod_defaults: PodTemplate | None = None
    """The operator-wide pod template overlay."""
    default_resources: ResourceRequirements | None = None
    """The operator-wide requests and limits of predictors, over the built-in ones."""


def workload_name(mld: str, version: int) -> str:
    return f"{mld}-v{version}"


def selector(mld: str, version: int | None = None) -> dict[str, str]:
    """Labels selecting the pods of a Deployment (all versions, or one)."""
    labels = {DEPLOYMENT_LABEL: mld}
    if version is not None:
        labels[VERSION_LABEL] = str(version)
    return labels


def pod_selector(mld: str) -> str:
    """:func:`selector` of every version as a label selector string (the scale subresource's)."""
    return f"{DEPLOYMENT_LABEL}={mld}"


def url(*, name: str, namespace: str) -> str:
    """The in-cluster URL of the Service (cluster DNS)."""
    return f"http://{name}.{namespace}.svc.cluster.local:{SERVICE_PORT}"


def child_metadata(*, name: str, owner: Owner, labels: Mapping[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner)],
    }


def base_labels(owner: Owner, model: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "loopwright",
        "app.kubernetes.io/name": "loopwright-predictor",
        DEPLOYMENT_LABEL: owner.name,
        MODEL_LABEL: model,
    }


def _env(*, served: Served, spec: DeploymentSpec, settings: PodSettings, owner: Owner) -> list[Manifest]:
    env: list[Manifest] = [
        {"name": "LOOPWRIGHT_MODEL_NAME", "value": served.model},
        {"name": "LOOPWRIGHT_MODEL_VERSION", "value": str(served.version)},
        {"name": "LOOPWRIGHT_MODEL_URI", "value": served.artifact_uri},
        {"name": "LOOPWRIGHT_MODEL_SHA256", "value": served.artifact_sha256},
        {"name": "LOOPWRIGHT_PROFILE_URI", "value": served.profile_uri},
        {"name": "PORT", "value": str(PORT)},
        {"name": "GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "LOOPWRIGHT_DRAIN_SECONDS", "value": str(DRAIN_SECONDS)},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 (an emptyDir of the pod)
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    if served.profile_sha256:
        env.append({"name": "LOOPWRIGHT_PROFILE_SHA256", "value": served.profile_sha256})
    if served.trusted_types:
        env.append({"name": "LOOPWRIGHT_TRUSTED_TYPES", "value": ",".join(served.trusted_types)})
    if served.compiled is not None:
        uri, sha256 = served.compiled
        env += [{"name": "LOOPWRIGHT_COMPILED_URI", "value": uri},
                {"name": "LOOPWRIGHT_COMPILED_SHA256", "value": sha256}]
    if spec.capture.fraction > 0:
        prefix = f"s3://{settings.artifact_bucket}/captures/{owner.namespace}/{owner.name}"
        env += [
            {"name": "LOOPWRIGHT_CAPTURE_URI", "value": prefix},
            {"name": "LOOPWRIGHT_CAPTURE_FRACTION", "value": repr(spec.capture.fraction)},
        ]
    if spec.feedback.token_secret_ref is not None:
        env.append({"name": "LOOPWRIGHT_FEEDBACK_TOKEN_FILE", "value": f"{FEEDBACK_TOKEN_DIR}/token"})
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint})
    if settings.credentials_secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": settings.credentials_secret, "key": key}}}
            for key in (ACCESS_KEY, SECRET_KEY)
        ]
    return env


def deployment(
    *, owner: Owner, spec: DeploymentSpec, served: Served, replicas: int | None, settings: PodSettings
) -> Manifest:
    """The apps/v1 Deployment serving one version (``<mld>-v<version>``).

    ``replicas`` None leaves ``spec.replicas`` out: a HorizontalPodAutoscaler owns it, and a
    server-side apply that does not name a field never changes it (:mod:`.autoscaler`).
    """
    pod_labels = {
        **base_labels(owner, served.model),
        VERSION_LABEL: str(served.version),
        MODEL_VERSION_LABEL: served.model_version,
    }
    # Tolerant probes: a CPU-starved node must not take the only ready pod out of the Service.
    # Draining needs no probe: a terminating pod leaves the endpoints when it is deleted.
    probe = {"httpGet": {"port": PORT}, "timeoutSeconds": 5}
    container: Manifest = {
        "name": CONTAINER,
        "image": served.image or settings.image,
        "command": ["loopwright-predictor"],
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        # Why a predictor that could not load its model exited, for the Deployment's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "env": _env(served=served, spec=spec, settings=settings, owner=owner),
        "readinessProbe": {
            **probe,
            "httpGet": {"path": "/v2/health/ready", "port": PORT},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        # Liveness counts only once the server has answered: 100 predictors starting at once on a
        # 2-core node (tests/faults/test_load.py, skops models importing scikit-learn) took over
        # the 40 s that liveness alone allowed to listen, were restarted, and with every restart
        # the node's load grew (0 of 101 ready after 4 min, 43 restarts). The startup probe gives
        # a starting process 5 min; one that fails its model load exits and is reported anyway.
        "startupProbe": {
            **probe,
            "httpGet": {"path": "/v2/health/live", "port": PORT},
            "periodSeconds": 2,
            "failureThreshold": STARTUP_SECONDS // 2,
        },
        "livenessProbe": {
            **probe,
            "httpGet": {"path": "/v2/health/live", "port": PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": [scratch_mount()],
    }
    volumes = [scratch_volume()]
    if (ref := spec.feedback.token_secret_ref) is not None:
        # A volume, not an environment variable: kubectl describe and /proc/<pid>/environ never show it.
        volumes.append({"name": "feedback-token", "secret": {
            "secretName": ref.name, "items": [{"key": ref.key, "path": "token"}], "defaultMode": 0o440}})
        container["volumeMounts"].append({"name": "feedback-token", "mountPath": FEEDBACK_TOKEN_DIR,
                                          "readOnly": True})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(name=workload_name(owner.name, served.version), owner=owner,
                                   labels=pod_labels),
        "spec": {
            **({} if replicas is None else {"replicas": replicas}),
            "selector": {"matchLabels": selector(owner.name, served.version)},
            # A new pod must be ready before an old one goes: a spec change never drops capacity.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 2,
            "template": apply(
                {"metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                        "prometheus.io/path": "/metrics",
                    },
                 },
                 "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": restricted_pod_security(),
                    "containers": [container],
                    "volumes": volumes,
                 }},
                role=Role.PREDICTOR, container=CONTAINER, selector=selector(owner.name, served.version),
                defaults=settings.pod_defaults, default_resources=settings.default_resources,
                resources=spec.resources, overlay=spec.pod_template),
        },
    }


def service(*, owner: Owner, model: str, version: int | None = None) -> Manifest:
    """The Service ``<mld>`` over every version's pods, or ``<mld>-v<version>`` over one."""
    name = owner.name if version is None else workload_name(owner.name, version)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(name=name, owner=owner, labels=base_labels(owner, model)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner.name, version),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": PORT, "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT, "protocol": "TCP",
                 "appProtocol": "kubernetes.io/h2c"},
            ],
        },
    }


def disruption_budget(*, owner: Owner, model: str) -> Manifest:
    """At most one predictor pod of the Deployment evicted at a time (node drains, autoscalers).

    ``maxUnavailable`` rather than ``minAvailable``: with one replica the latter would
    block every drain forever.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(name=owner.name, owner=owner, labels=base_labels(owner, model)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(owner.name)}},
    }


def model_loaded(pods: Iterable[Mapping[str, Any]]) -> Verdict:
    """The ``ModelLoaded`` condition from a Deployment's predictor pods (as the API returns them).

    A predictor that cannot load its model (a corrupt or mismatching compiled artifact, a wrong
    sha256, a missing object) exits 1 with the reason as its termination message, which the
    kubelet keeps in the container's ``lastState`` while it restarts it: that reason is what
    this condition shows, with the version and the pod.
    """
    for pod in pods:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            if status.get("name") != CONTAINER:
                continue
            for state in (status.get("state"), status.get("lastState")):
                terminated = (state or {}).get("terminated")
                if terminated and terminated.get("exitCode") == 1 and terminated.get("message"):
                    message = terminated["message"].strip().splitlines()[-1][:900]
                    return Verdict(type=MODEL_LOADED, status=False, reason=MODEL_LOAD_FAILED,
                                   message=f"version {labels.get(VERSION_LABEL, '?')} (pod "
                                           f"{meta['name']}): {message}")
    return Verdict(type=MODEL_LOADED, status=True, reason="Loaded",
                   message="no predictor pod has failed to load its model")
