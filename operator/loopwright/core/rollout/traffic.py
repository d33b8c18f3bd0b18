"""From a desired canary weight to replicas (any cluster) or HTTPRoute weights (Gateway API).

In ``replicas`` mode one Service selects the pods of both versions and spreads
requests evenly over ready endpoints, so the canary's share of traffic is its
share of ready pods. Weights are therefore approximated by pod counts, and the
*actual* weight is always computed from ready pods, never assumed: with one
stable replica a 10% step really sends about half of the traffic to the canary,
and the status says so.

The larger side keeps ``replicas`` pods, so capacity never drops below what the
user asked for during a rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HTTPROUTE_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"


@dataclass(frozen=True, kw_only=True)
class Split:
    """Pods wanted per side for one weight."""

    stable: int
    canary: int


def replica_split(*, weight: int, replicas: int) -> Split:
    """Pods per side whose ratio is closest to ``weight`` percent on the canary.

    The side with the larger weight runs ``replicas`` pods, the other the nearest
    proportional count, at least one (a canary with zero pods gets no traffic to
    judge). Weight 0 means no canary; weight 100 means no stable pods are needed.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be within 0..100, got {weight}")
    full = max(replicas, 1)
    if weight == 0:
        return Split(stable=replicas, canary=0)
    if weight == 100:
        return Split(stable=0, canary=full)
    if weight <= 50:
        return Split(stable=full, canary=_closest(full, weight))
    return Split(stable=_closest(full, 100 - weight), canary=full)


def autoscaled_split(*, weight: int, stable: int, maximum: int, gateway: bool = False) -> Split:
    """Pods per side when an autoscaler sizes the stable version (``spec.autoscaling``).

    The stable side keeps the size the autoscaler gave it: the operator never writes it, so
    the two never fight. The canary gets its weight's share of that size, as
    :func:`replica_split` (or :func:`gateway_canary_replicas`) would give it, at most
    ``maximum`` pods (the autoscaler's bound for a version); weight 100 (a promotion) is the
    stable's full size, so the switch keeps the capacity the autoscaler found necessary.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be within 0..100, got {weight}")
    full = max(stable, 1)
    if weight == 0:
        canary = 0
    elif weight == 100:
        canary = full
    elif gateway:
        canary = gateway_canary_replicas(weight=weight, replicas=full)
    else:
        canary = _closest(full, weight)
    return Split(stable=stable, canary=min(canary, max(maximum, 1)))


def _closest(full: int, percent: int) -> int:
    """Pods n >= 1 whose share n / (n + full) is closest to ``percent`` (ties: fewer pods)."""
    ideal = full * percent / (100 - percent)
    candidates = {max(1, math.floor(ideal)), max(1, math.ceil(ideal))}
    return min(sorted(candidates), key=lambda n: abs(100 * n / (n + full) - percent))


def actual_weight(*, canary_ready: int, stable_ready: int) -> int:
    """Canary percentage of traffic in replicas mode: its share of ready endpoints."""
    total = canary_ready + stable_ready
    return 0 if total == 0 else _round(100 * canary_ready / total)


def gateway_canary_replicas(*, weight: int, replicas: int) -> int:
    """Canary pods in gatewayAPI mode: enough capacity for its share, at least one."""
    if weight == 0:
        return 0
    return max(1, math.ceil(max(replicas, 1) * weight / 100))


def httproute(
    *,
    name: str,
    namespace: str,
    labels: dict[str, str],
    parent: dict[str, Any],
    port: int,
    backends: list[tuple[str, int]],
) -> dict[str, Any]:
    """An HTTPRoute sending traffic to per-version Services with the given weights.

    ``backends`` are ``(service name, weight)`` pairs; weights are relative, as in
    the Gateway API, so ``[(stable, 90), (canary, 10)]`` is a 10% canary.
    """
    return {
        "apiVersion": f"{HTTPROUTE_GROUP}/{HTTPROUTE_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {
                    "backendRefs": [
                        {"name": service, "port": port, "weight": weight} for service, weight in backends
                    ]
                }
            ],
        },
    }


def route_weight(route: dict[str, Any] | None, *, canary_service: str) -> int | None:
    """The canary's percentage in an HTTPRoute the API server returned, once a Gateway accepted it.

    None until some parent reports ``Accepted=True``: a route nobody serves moves no traffic,
    so reporting its configured weight as actual would be a lie.
    """
    if not route:
        return None
    parents = (route.get("status") or {}).get("parents") or []
    accepted = any(
        c.get("type") == "Accepted" and c.get("status") == "True"
        for p in parents
        for c in p.get("conditions") or ()
    )
    if not accepted:
        return None
    refs = [ref for rule in route.get("spec", {}).get("rules") or () for ref in rule.get("backendRefs") or ()]
    total = sum(int(ref.get("weight", 1)) for ref in refs)
    canary = sum(int(ref.get("weight", 1)) for ref in refs if ref.get("name") == canary_service)
    return 0 if total == 0 else _round(100 * canary / total)


def _round(x: float) -> int:
    """Half-up rounding (Python's round() is half-to-even, which makes 2.5 pods into 2)."""
    return math.floor(x + 0.5)
