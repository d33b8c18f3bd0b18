"""Which version a Deployment's spec asks to serve: the pinned one, or the newest Validated one.

Pure: the controller lists the model's versions, calls :func:`resolve`, and hands the
:class:`Target` to the canary planner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loopwright.api.deployment import LATEST, DeploymentSpec, DeploymentStatus
from loopwright.api.modelversion import ModelPhase


@dataclass(frozen=True, kw_only=True)
class VersionInfo:
    """One ModelVersion of the model, as far as the rollout cares."""

    version: int
    name: str
    phase: ModelPhase | None


@dataclass(frozen=True, kw_only=True)
class Target:
    """The version the spec asks to serve, or why there is none (``version`` None)."""

    version: int | None
    name: str = ""
    problem: str = ""
    permanent: bool = False
    """Waiting cannot help (e.g. the pinned version was rejected by validation)."""


def resolve(
    *, spec: DeploymentSpec, status: DeploymentStatus, generation: int, versions: Sequence[VersionInfo]
) -> Target:
    """Which version the spec asks for: the pinned one, or the newest Validated one not rejected here.

    ``spec.rollout.abort`` excludes its version. A pinned version rejected here is
    retried only once the spec changed after the rejection.
    """
    aborted = spec.rollout.abort.version if spec.rollout.abort else None
    rejected = set(status.rejected_versions)
    if spec.version == LATEST:
        candidates = [
            v
            for v in versions
            if v.phase == ModelPhase.VALIDATED and v.version not in rejected and v.version != aborted
        ]
        if not candidates:
            skipped = sorted(v.version for v in versions if v.phase == ModelPhase.VALIDATED)
            why = f" (validated but rejected or aborted here: {skipped})" if skipped else ""
            return Target(
                version=None, problem=f"no Validated ModelVersion of model {spec.model!r} to serve{why}"
            )
        best = max(candidates, key=lambda v: v.version)
        return Target(version=best.version, name=best.name)
    pinned = int(spec.version)
    found = next((v for v in versions if v.version == pinned), None)
    if found is None:
        return Target(
            version=None, problem=f"ModelVersion {spec.model} version {pinned} does not exist (yet)"
        )
    if found.phase in (ModelPhase.REJECTED, ModelPhase.FAILED):
        return Target(
            version=None,
            permanent=True,
            problem=f"ModelVersion {found.name} is {found.phase}: it cannot be served",
        )
    if found.phase != ModelPhase.VALIDATED:
        return Target(version=None, problem=f"ModelVersion {found.name} is not Validated yet")
    if pinned == aborted:
        return Target(version=None, problem=f"version {pinned} is aborted by spec.rollout.abort")
    if pinned in rejected and generation <= (status.rejected_generation or 0):
        return Target(
            version=None, problem=f"version {pinned} was rolled back here; change the spec to retry it"
        )
    return Target(version=pinned, name=found.name)
