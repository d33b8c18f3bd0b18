"""Reading the predictors' /metrics straight from their pods.

The canary analysis and the DriftPolicy both need per-pod counters of a handful
of predictor pods, right now, without a Prometheus server in the cluster (kind
has none). So the operator lists the ready pods of a Deployment by label and
scrapes each pod IP itself; :mod:`loopwright.core.exposition` parses what they answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from loopwright.core.exposition import PodMetrics, PodTarget, parse_prometheus

_MAX_BODY = 16 * 1024 * 1024


def pod_target(pod: Mapping[str, Any], *, version_label: str) -> PodTarget | None:
    """A scrape target for a pod (as the API returns it) that is Ready and has an IP, else None."""
    status, meta = pod.get("status") or {}, pod["metadata"]
    if not status.get("podIP") or meta.get("deletionTimestamp") is not None:
        return None
    conditions = status.get("conditions") or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    if not ready:
        return None
    labels: Mapping[str, str] = meta.get("labels") or {}
    return PodTarget(name=meta["name"], uid=meta["uid"], ip=status["podIP"],
                     version=labels.get(version_label, ""))


async def _fetch_one(session: aiohttp.ClientSession, pod: PodTarget, *, port: int) -> PodMetrics:
    host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
    try:
        async with session.get(f"http://{host}:{port}/metrics") as response:
            if response.status != 200:
                return PodMetrics(pod=pod, error=f"HTTP {response.status}")
            body = await response.content.read(_MAX_BODY + 1)
            if len(body) > _MAX_BODY:
                return PodMetrics(pod=pod, error=f"metrics larger than {_MAX_BODY} bytes")
        return PodMetrics(pod=pod, samples=parse_prometheus(body.decode("utf-8", errors="replace")))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return PodMetrics(pod=pod, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
    except ValueError as exc:
        return PodMetrics(pod=pod, error=f"unparsable metrics: {exc}")


async def fetch_pod_metrics(
    *, pods: Sequence[PodTarget], port: int, timeout: float
) -> dict[str, PodMetrics]:
    """Scrape every pod concurrently; keyed by pod UID.

    An unreachable or misbehaving pod is reported in its entry's ``error``, never
    raised: one pod being replaced must not blind the analysis of the others.
    """
    if not pods:
        return {}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout, trust_env=False) as session:
        results = await asyncio.gather(*(_fetch_one(session, pod, port=port) for pod in pods))
    return {result.pod.uid: result for result in results}
