"""Handlers of Deployment objects (loopwright.dev/v1alpha1).

Selectors name group, version and plural explicitly: "deployments" alone would be
ambiguous with apps/v1 Deployment, which kopf refuses to serve.

Until the real behaviour lands, the reconcile validates the spec and publishes
Ready=False with reason NotImplemented (or InvalidSpec).
"""

from __future__ import annotations

from typing import Any

import kopf

from loopwright import metrics
from loopwright.api.kinds import DEPLOYMENT as KIND
from loopwright.controllers._common import stub_status


@kopf.on.resume(group=KIND.group, version=KIND.version, plural=KIND.plural, id="deployment.reconcile")
@kopf.on.create(group=KIND.group, version=KIND.version, plural=KIND.plural, id="deployment.reconcile")
@kopf.on.update(group=KIND.group, version=KIND.version, plural=KIND.plural, id="deployment.reconcile")
def reconcile(
    spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    with metrics.reconcile(kind=KIND.kind, handler="reconcile"):
        patch.status.update(
            stub_status(KIND, spec=spec, status=status, generation=meta.get("generation"))
        )
