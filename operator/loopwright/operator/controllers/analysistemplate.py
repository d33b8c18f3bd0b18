"""The AnalysisTemplate controller (loopwright.dev/v1alpha1): publish whether a template is usable.

A template is data that Deployments read at each analysis check
(:mod:`loopwright.operator.probes.prometheus`); its reconcile only publishes Ready (and the number
of checks), so kstatus tools, Argo CD and `kubectl wait` see a template like every other kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from loopwright.api.analysistemplate import AnalysisTemplateSpec
from loopwright.api.kinds import ANALYSIS_TEMPLATE as KIND
from loopwright.api.reasons import INVALID_SPEC, VALID
from loopwright.core.conditions import READY, Verdict
from loopwright.operator.controllers._common import parse_spec
from loopwright.operator.runtime.client import resource
from loopwright.operator.runtime.controller import MANAGER, Context, Key
from loopwright.operator.runtime.queue import Result
from loopwright.operator.runtime.status import Decision

RES = resource(KIND)


def template_decision(spec: Mapping[str, Any]) -> Decision:
    """What a template's status says: Ready with its checks, or InvalidSpec (pure)."""
    parsed = parse_spec(KIND, spec)
    if isinstance(parsed, AnalysisTemplateSpec):
        names = ", ".join(c.name for c in parsed.prometheus)
        return Decision(fields={"checks": len(parsed.prometheus)}, verdicts=[Verdict(
            type=READY, status=True, reason=VALID,
            message=f"{len(parsed.prometheus)} Prometheus checks: {names}"[:1000])])
    return Decision(fields={"checks": None},
                    verdicts=[Verdict(type=READY, status=False, reason=INVALID_SPEC, message=str(parsed))])


class AnalysisTemplates:
    kind = KIND.kind
    workers = 2

    async def reconcile(self, ctx: Context, key: Key) -> Result:
        obj = await ctx.api.get(RES, *key)
        if obj is not None:
            await ctx.status.write(RES, obj, template_decision(obj.get("spec") or {}))
        return Result()


MANAGER.register(AnalysisTemplates())
watch = kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural,
                      id="analysistemplate.watch")(MANAGER.watcher(KIND.kind))
