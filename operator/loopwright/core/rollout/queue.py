"""Canaries finish: what a newer version arriving during a canary does (spec.rollout.onNewVersion).

Queue (the default) keeps the canary in progress and shows the newest version waiting in
``status.queued``; once the canary is promoted or rolled back, the next round starts a canary of
the newest Validated version, so versions that arrived in between are skipped, not rolled out one
by one. Supersede drops the canary at once and starts one of the newer version.

Argo Rollouts aborts the rollout in progress and restarts with the new revision; Flagger restarts
the analysis with the new revision. Both suit a new revision made by a person, who wants the
latest code out. Versions a retrain loop makes arrive by themselves, possibly faster than one
canary takes (a short cooldown, a schedule): superseding would then never let a canary finish, and
the loop would never reach its new state. A queued version loses nothing: the newest one rolls out
next, judged against a stable version that has itself passed a full analysis.

The user still decides: pinning another version (spec.version) or aborting the canary
(spec.rollout.abort) replaces it at once, whatever the policy; so does a canary version that is no
longer Validated.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from loopwright.api.deployment import LATEST, CanaryStatus, DeploymentSpec, NewVersionPolicy


@dataclass(frozen=True, kw_only=True)
class Decision:
    """Keep the canary (``queued``: the version waiting behind it, if any), or drop it (``why``)."""

    keep: bool
    queued: int | None = None
    why: str = ""


def on_target(
    *, spec: DeploymentSpec, canary: CanaryStatus, target: int | None, problem: str,
    servable: Collection[int] | None,
) -> Decision:
    """What the canary in progress does now that the spec resolves to ``target``.

    ``servable`` are the model's Validated versions (None: not observed; the canary counts as
    servable); ``problem`` is why the spec resolves to no version, if it does not.
    """
    if target == canary.version:
        return Decision(keep=True)
    why = f"the spec now asks for version {target}" if target is not None else problem
    if target is None or spec.version != LATEST:
        return Decision(keep=False, why=why)
    if servable is not None and canary.version not in servable:
        return Decision(keep=False, why=f"version {canary.version} is no longer Validated")
    if target < canary.version:
        return Decision(keep=False, why=why)
    if spec.rollout.on_new_version == NewVersionPolicy.SUPERSEDE:
        return Decision(keep=False,
                        why=f"version {target} supersedes it (spec.rollout.onNewVersion Supersede)")
    return Decision(keep=True, queued=target)
