"""The analysis I/O of a canary: scrape the predictors of canary and stable into the window, read
the reference prediction profiles (cached, bounded), run the Prometheus checks, judge."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from loopwright import storage
from loopwright.core.profile import FeatureProfile, Profile
from loopwright.core.rollout import analysis, canary
from loopwright.core.rollout import prometheus as prometheus_rules
from loopwright.operator.builders import predictor as build
from loopwright.operator.controllers.deployment.observe import Observed
from loopwright.operator.probes import prometheus as prometheus_probe
from loopwright.operator.probes.scrape import fetch_pod_metrics
from loopwright.operator.runtime.cache import BoundedCache
from loopwright.operator.runtime.client import Obj
from loopwright.operator.runtime.controller import Context

SCRAPE_TIMEOUT = 3.0
PROFILES = 64
"""Reference profiles kept in memory (immutable: keyed by URI and sha256)."""

_log = logging.getLogger(__name__)
_profiles: BoundedCache[tuple[str, str | None], Profile] = BoundedCache(PROFILES)


def _prediction_profile(mv: Obj | None) -> FeatureProfile | None:
    """The reference prediction bins of a version."""
    if mv is None:
        return None
    spec = mv.get("spec", {})
    uri, sha = spec.get("profileUri"), spec.get("profileSha256")
    if not uri:
        return None
    key = (uri, sha)
    profile = _profiles.get(key)
    if profile is None:
        try:
            profile = Profile.model_validate_json(storage.get_bytes(uri, sha256=sha))
        except (storage.StorageError, ValueError) as exc:
            _log.warning("cannot read the profile %s: %s", uri, exc)
            return None
        _profiles.put(key, profile)
    return profile.prediction


async def scrape(ctx: Context, obs: Observed, *, now: datetime,
                 judge: bool) -> tuple[list[Any], canary.Check | None, list[float]]:
    """Update the analysis window from the pods of canary and stable; run a check if ``judge``."""
    status, spec = obs.status, obs.spec
    assert status.canary is not None
    assert status.stable is not None
    wanted = {str(status.canary.version), str(status.stable.version)}
    targets = [t for t in obs.targets if t.version in wanted]
    scraped = await fetch_pod_metrics(pods=targets, port=build.PORT, timeout=SCRAPE_TIMEOUT)
    window_status = status.analysis
    bounds = list(window_status.latency_bounds) if window_status is not None else []
    if not bounds:
        bounds = next((analysis.latency_bounds(m) for m in scraped.values()
                       if m.ok and analysis.latency_bounds(m)), [])
    rows = [(m.pod, int(m.pod.version), analysis.counters(m, bounds=bounds))
            for m in scraped.values() if m.ok]
    for m in scraped.values():
        if not m.ok:
            _log.info("scrape of pod %s failed: %s", m.pod.name, m.error)
    start = window_status.window_start if window_status is not None and window_status.window_start else now
    window = analysis.update_window(window_status.pods if window_status is not None else [], scraped=rows,
                                    window_start=start, created=obs.created)
    if not judge:
        return window, None, bounds
    canary_totals = analysis.totals(window, version=status.canary.version, bounds=bounds)
    stable_totals = analysis.totals(window, version=status.stable.version, bounds=bounds)
    canary_profile = stable_profile = None
    if spec.rollout.analysis.metrics.prediction_drift is not None:
        canary_profile, stable_profile = await asyncio.gather(
            asyncio.to_thread(_prediction_profile, obs.versions.get(status.canary.version)),
            asyncio.to_thread(_prediction_profile, obs.versions.get(status.stable.version)))
    meta = obs.obj["metadata"]
    target = prometheus_rules.Target(namespace=meta["namespace"], deployment=meta["name"], model=spec.model,
                                     version=status.canary.version, stable_version=status.stable.version)
    prometheus = await prometheus_probe.run(ctx.api, spec.rollout.analysis, target=target,
                                            timeout=SCRAPE_TIMEOUT, policy=ctx.config.egress)
    results, verdict = analysis.evaluate(spec=spec.rollout.analysis, canary=canary_totals,
                                         stable=stable_totals,
                                         canary_prediction=canary_profile, stable_prediction=stable_profile,
                                         prometheus=prometheus)
    return window, canary.Check(results=results, verdict=verdict), bounds
