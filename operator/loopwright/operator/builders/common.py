"""What every child object of the operator shares: ownership, the pod user, the credential keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopwright.api.common import API_VERSION

Manifest = dict[str, Any]

NONROOT_UID = 65532
"""The user every pod runs as (restricted Pod Security Standard)."""
ACCESS_KEY = "AWS_ACCESS_KEY_ID"
SECRET_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 (the name of a Secret key, not a secret)


@dataclass(frozen=True, kw_only=True)
class Owner:
    """The custom resource a child object belongs to (garbage-collected with it)."""

    kind: str
    name: str
    uid: str
    namespace: str


def owner_reference(owner: Owner) -> Manifest:
    return {"apiVersion": API_VERSION, "kind": owner.kind, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}


def restricted_pod_security() -> Manifest:
    """Pod-level settings of the restricted Pod Security Standard (a fresh dict per manifest)."""
    return {"runAsNonRoot": True, "runAsUser": NONROOT_UID, "runAsGroup": NONROOT_UID, "fsGroup": NONROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container_security() -> Manifest:
    """Container-level settings of the restricted standard; the root filesystem is read-only."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def scratch_volume() -> Manifest:
    """The emptyDir behind /tmp: the only writable place of a read-only root filesystem."""
    return {"name": "tmp", "emptyDir": {}}


def scratch_mount() -> Manifest:
    return {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108 (an emptyDir of the pod)
