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
