"""The predictor's configuration: the environment variables of the predictor contract.

The model (``LOOPWRIGHT_MODEL_*``, ``LOOPWRIGHT_PROFILE_*``), optionally its compiled form
(``LOOPWRIGHT_COMPILED_URI`` and ``_SHA256``, which then serves instead of the skops file), the
HTTP ``PORT`` (8080) and the gRPC ``GRPC_PORT`` (8081; 0 turns gRPC off), body limit, capture,
drain and feedback settings. ``LOOPWRIGHT_FEEDBACK_TOKEN_FILE`` names the file (a mounted Secret
key) holding the bearer token that ``/feedback`` requires; without it feedback is refused.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(Exception):
    """The environment does not describe a servable model."""


@dataclass(frozen=True)
class Settings:
    """The predictor's configuration (environment variables of the predictor contract)."""

    model_name: str
    model_uri: str
    model_sha256: str
    profile_uri: str
    model_version: str = ""
    profile_sha256: str | None = None
    compiled_uri: str | None = None
    compiled_sha256: str | None = None
    trusted_types: tuple[str, ...] = ()
    host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on the pod's address
    port: int = 8080
    grpc_port: int = 8081
    max_body_bytes: int = 1 << 20
    capture_uri: str | None = None
    capture_fraction: float = 0.0
    pod_name: str = "predictor"
    drain_seconds: float = 5.0
    feedback_capacity: int = 100_000
    feedback_token: str | None = field(default=None, repr=False)
    """The bearer token /feedback requires (from LOOPWRIGHT_FEEDBACK_TOKEN_FILE); None: refused."""

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [
            k
            for k in (
                "LOOPWRIGHT_MODEL_NAME",
                "LOOPWRIGHT_MODEL_URI",
                "LOOPWRIGHT_MODEL_SHA256",
                "LOOPWRIGHT_PROFILE_URI",
            )
            if not env.get(k)
        ]
        if missing:
            raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")
        try:
            settings = cls(
                model_name=env["LOOPWRIGHT_MODEL_NAME"],
                model_version=env.get("LOOPWRIGHT_MODEL_VERSION", ""),
                model_uri=env["LOOPWRIGHT_MODEL_URI"],
                model_sha256=env["LOOPWRIGHT_MODEL_SHA256"],
                profile_uri=env["LOOPWRIGHT_PROFILE_URI"],
                profile_sha256=env.get("LOOPWRIGHT_PROFILE_SHA256") or None,
                compiled_uri=env.get("LOOPWRIGHT_COMPILED_URI") or None,
                compiled_sha256=env.get("LOOPWRIGHT_COMPILED_SHA256") or None,
                trusted_types=tuple(t for t in env.get("LOOPWRIGHT_TRUSTED_TYPES", "").split(",") if t),
                host=env.get("HOST", "0.0.0.0"),  # noqa: S104
                port=int(env.get("PORT", "8080")),
                grpc_port=int(env.get("GRPC_PORT", "8081")),
                max_body_bytes=int(env.get("LOOPWRIGHT_MAX_BODY_BYTES", str(1 << 20))),
                capture_uri=env.get("LOOPWRIGHT_CAPTURE_URI") or None,
                capture_fraction=float(env.get("LOOPWRIGHT_CAPTURE_FRACTION", "0")),
                pod_name=env.get("POD_NAME") or env.get("HOSTNAME") or "predictor",
                drain_seconds=float(env.get("LOOPWRIGHT_DRAIN_SECONDS", "5")),
                feedback_capacity=int(env.get("LOOPWRIGHT_FEEDBACK_CAPACITY", "100000")),
                feedback_token=_token(env.get("LOOPWRIGHT_FEEDBACK_TOKEN_FILE")),
            )
        except ValueError as exc:
            raise SettingsError(f"invalid setting: {exc}") from exc
        if (settings.compiled_uri is None) != (settings.compiled_sha256 is None):
            raise SettingsError("LOOPWRIGHT_COMPILED_URI and LOOPWRIGHT_COMPILED_SHA256 go together")
        if not 0 <= settings.grpc_port <= 65535 or settings.grpc_port == settings.port:
            raise SettingsError("GRPC_PORT must be a port other than PORT (0 turns gRPC off)")
        if not 0.0 <= settings.capture_fraction <= 1.0:
            raise SettingsError("LOOPWRIGHT_CAPTURE_FRACTION must be between 0 and 1")
        if settings.max_body_bytes < 1 or settings.feedback_capacity < 1 or settings.drain_seconds < 0:
            raise SettingsError(
                "body limit and feedback capacity must be positive, drain seconds not negative"
            )
        return settings


def _token(path: str | None) -> str | None:
    """The token in ``path`` (a mounted Secret key), stripped; a set but unusable file is an error."""
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"LOOPWRIGHT_FEEDBACK_TOKEN_FILE={path}: {exc.strerror}") from exc
    if len(token) < 16:
        raise SettingsError(f"LOOPWRIGHT_FEEDBACK_TOKEN_FILE={path}: the token needs at least 16 characters")
    return token
