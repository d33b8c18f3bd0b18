"""Handlers of ModelVersion objects (loopwright.dev/v1alpha1).

Until the real behaviour lands, the reconcile validates the spec and publishes
Ready=False with reason NotImplemented (or InvalidSpec).
"""

from __future__ import annotations

from typing import Any

import kopf

from loopwright import metrics
from loopwright.api.kinds import MODEL_VERSION as KIND
from loopwright.controllers._common import stub_status


@kopf.on.resume(group=KIND.group, version=KIND.version, plural=KIND.plural, id="modelversion.reconcile")
@kopf.on.create(group=KIND.group, version=KIND.version, plural=KIND.plural, id="modelversion.reconcile")
@kopf.on.update(group=KIND.group, version=KIND.version, plural=KIND.plural, id="modelversion.reconcile")
def reconcile(
    spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    with metrics.reconcile(kind=KIND.kind, handler="reconcile"):
        patch.status.update(
            stub_status(KIND, spec=spec, status=status, generation=meta.get("generation"))
        )
