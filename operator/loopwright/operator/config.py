"""Operator settings from environment variables, validated once at start-up.

A ConfigMap works the same way: mount it with ``envFrom: [{configMapRef: ...}]``.
A bad value stops the operator before it touches the cluster, with an error that
names the variable, so a typo never turns into a half-working operator.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import pydantic
import yaml

from loopwright.api.common import ResourceRequirements
from loopwright.api.podtemplate import PodTemplate
from loopwright.core.egress import Policy, parse_allow
from loopwright.operator.builders.pods import Role

PREFIX = "LOOPWRIGHT_"
DEFAULT_BUCKET = "loopwright"
DEFAULT_TRAINER_IMAGE = "loopwright/ml:0.1.0"
DEFAULT_PREDICTOR_IMAGE = "loopwright/ml:0.1.0"
DEFAULT_METRICS_PORT = 8000

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IMAGE = re.compile(r"^[^\s:@/][^\s]*$")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, kw_only=True)
class SecretName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything the operator reads from its environment."""

    namespaces: tuple[str, ...]
    """Namespaces to watch; empty means the whole cluster."""
    s3_endpoint: str | None
    """S3 endpoint URL for the operator and the Jobs it starts; None means AWS's default."""
    artifact_bucket: str
    s3_secret: SecretName | None
    """Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY handed to trainer and predictor pods."""
    trainer_image: str
    predictor_image: str
    metrics_port: int
    """Port of the /metrics and /healthz endpoints."""
    suspend_jobs: bool = False
    """Create training Jobs suspended (no trainer pod runs): for control-plane scale benchmarks only."""
    pod_defaults: PodTemplate | None = None
    """Overlay of every pod the operator creates (LOOPWRIGHT_POD_DEFAULTS, a podTemplate in YAML)."""
    default_resources: Mapping[Role, ResourceRequirements] = dataclasses.field(default_factory=dict)
    """Requests and limits per role (LOOPWRIGHT_DEFAULT_RESOURCES: YAML map predictor/trainer/... →)."""
    egress: Policy = dataclasses.field(default_factory=Policy)
    """Where Prometheus checks and webhooks may go (LOOPWRIGHT_EGRESS_ALLOW; never link-local)."""

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the settings; raises ConfigError naming every bad variable."""
    env = os.environ if environ is None else environ
    errors: list[str] = []

    def get(name: str, default: str = "") -> str:
        return env.get(PREFIX + name, default).strip()

    def check(name: str, ok: bool, expected: str) -> None:
        if not ok:
            errors.append(f"{PREFIX}{name}={env.get(PREFIX + name, '')!r}: expected {expected}")

    namespaces = tuple(ns.strip() for ns in get("NAMESPACES").split(",") if ns.strip())
    check("NAMESPACES", all(_DNS_LABEL.match(ns) for ns in namespaces),
          "a comma-separated list of namespace names (empty = all namespaces)")

    endpoint = get("S3_ENDPOINT") or None
    if endpoint is not None:
        parts = urlsplit(endpoint)
        check("S3_ENDPOINT", parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query,
              "an http(s) URL such as http://s3.loopwright-system.svc:9000")

    bucket = get("ARTIFACT_BUCKET", DEFAULT_BUCKET)
    check("ARTIFACT_BUCKET", bool(_BUCKET.match(bucket)),
          "an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)")

    secret: SecretName | None = None
    if raw := get("S3_SECRET"):
        namespace, _, name = raw.partition("/")
        ok = bool(_DNS_LABEL.match(namespace)) and bool(_DNS_NAME.match(name)) and len(name) <= 253
        check("S3_SECRET", ok, "namespace/name of a Secret, e.g. loopwright-system/loopwright-s3")
        if ok:
            secret = SecretName(namespace=namespace, name=name)

    trainer = get("TRAINER_IMAGE", DEFAULT_TRAINER_IMAGE)
    check("TRAINER_IMAGE", bool(_IMAGE.match(trainer)), "a container image reference")
    predictor = get("PREDICTOR_IMAGE", DEFAULT_PREDICTOR_IMAGE)
    check("PREDICTOR_IMAGE", bool(_IMAGE.match(predictor)), "a container image reference")

    raw_port = get("METRICS_PORT", str(DEFAULT_METRICS_PORT))
    port = int(raw_port) if raw_port.isdigit() else 0
    check("METRICS_PORT", 1 <= port <= 65535, "a TCP port number between 1 and 65535")

    raw_suspend = get("SUSPEND_JOBS", "false").lower()
    check("SUSPEND_JOBS", raw_suspend in ("true", "false"), "true or false")

    pod_defaults = _parse(get("POD_DEFAULTS"), PodTemplate, "POD_DEFAULTS", errors)
    resources = _parse(get("DEFAULT_RESOURCES"), _RoleResources, "DEFAULT_RESOURCES", errors)

    egress = Policy()
    try:
        egress = Policy(allow=parse_allow(get("EGRESS_ALLOW")))
    except ValueError as exc:
        errors.append(f"{PREFIX}EGRESS_ALLOW: {exc}")

    if errors:
        raise ConfigError("invalid operator configuration: " + "; ".join(errors))
    return Config(namespaces=namespaces, s3_endpoint=endpoint, artifact_bucket=bucket, s3_secret=secret,
                  trainer_image=trainer, predictor_image=predictor, metrics_port=port,
                  suspend_jobs=raw_suspend == "true", pod_defaults=pod_defaults,
                  default_resources=resources.root if resources else {}, egress=egress)


_RoleResources = pydantic.RootModel[dict[Role, ResourceRequirements]]

_M = TypeVar("_M", bound=pydantic.BaseModel)


def _parse(raw: str, model: type[_M], name: str, errors: list[str]) -> _M | None:
    """A YAML (or JSON) value checked by the same model admission uses; None when unset."""
    if not raw:
        return None
    try:
        return model.model_validate(yaml.safe_load(raw))
    except (yaml.YAMLError, pydantic.ValidationError) as exc:
        first = str(exc).splitlines()
        errors.append(f"{PREFIX}{name}: {' '.join(first[:3])}")
        return None
