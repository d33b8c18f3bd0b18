"""AnalysisTemplate (mlat): Prometheus checks that several Deployments share.

A Deployment names templates in ``spec.rollout.analysis.templates``; every analysis check of its
canary then also runs the templates' checks, each with its own bounds, headers and credentials.
As Argo Rollouts' AnalysisTemplate, it is a typed object validated at ``kubectl apply``, that a
platform team can own (RBAC) while application teams reference it. Unlike Argo's, it takes no
arguments: a query refers to the canary through placeholders (``{{version}}``, ``{{model}}``,
``{{deployment}}``, ``{{namespace}}``), and no AnalysisRun objects are created: results are in
the Deployment's status next to its other analysis results.
"""

from __future__ import annotations

from pydantic import Field

from loopwright.api._base import ApiModel
from loopwright.api.analysis import PrometheusChecks
from loopwright.api.common import ResourceStatus


class AnalysisTemplateSpec(ApiModel):
    """The checks a Deployment runs when it names this template."""

    prometheus: PrometheusChecks = Field(
        min_length=1,
        description="PromQL checks, each with its own bounds, headers and credentials (a secretRef names a "
                    "Secret in the namespace of the Deployment that runs the check).")


class AnalysisTemplateStatus(ResourceStatus):
    """Whether the template is usable."""

    checks: int | None = Field(default=None, ge=0, description="Number of Prometheus checks.")
