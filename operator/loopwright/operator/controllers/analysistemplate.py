"""Handlers of AnalysisTemplate objects (loopwright.dev/v1alpha1): publish whether they are usable.

A template is data that Deployments read at each analysis check
(:mod:`loopwright.operator.probes.prometheus`); its handler only publishes Ready (and the number
of checks), so kstatus tools, Argo CD and `kubectl wait` see a template like every other kind.
"""

from __future__ import annotations

from typing import Any

import kopf

from loopwright.api.analysistemplate import AnalysisTemplateSpec
from loopwright.api.kinds import ANALYSIS_TEMPLATE as KIND
from loopwright.core.conditions import READY, Verdict
from loopwright.operator import metrics
from loopwright.operator.controllers import _runtime
from loopwright.operator.controllers._common import INVALID_SPEC, parse_spec, ready_status


def template_status(spec: kopf.Spec, current: kopf.Status, generation: int | None) -> dict[str, Any]:
    """The status patch of a template: Ready with its checks, or InvalidSpec (pure)."""
    parsed = parse_spec(KIND, spec)
    if isinstance(parsed, AnalysisTemplateSpec):
        names = ", ".join(c.name for c in parsed.prometheus)
        verdict = Verdict(type=READY, status=True, reason="Valid",
                          message=f"{len(parsed.prometheus)} Prometheus checks: {names}"[:1000])
        checks: int | None = len(parsed.prometheus)
    else:
        verdict = Verdict(type=READY, status=False, reason=INVALID_SPEC, message=str(parsed))
        checks = None
    return {**ready_status(status=current, generation=generation, verdict=verdict), "checks": checks}


@kopf.on.resume(group=KIND.group, version=KIND.version, plural=KIND.plural, id="analysistemplate.reconcile")
@kopf.on.create(group=KIND.group, version=KIND.version, plural=KIND.plural, id="analysistemplate.reconcile")
@kopf.on.update(group=KIND.group, version=KIND.version, plural=KIND.plural, id="analysistemplate.reconcile")
def reconcile(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, body: kopf.Body, **_: Any) -> None:
    with metrics.reconcile(kind=KIND.kind, handler="reconcile"):
        try:
            _runtime.patch_status(KIND, body, template_status(spec, status, meta.get("generation")))
        except _runtime.ConflictError as exc:
            raise kopf.TemporaryError(f"{exc}; deciding again on the new version", delay=1) from exc
