"""Weights as replicas (honest actual weight) and as HTTPRoute backends."""

from __future__ import annotations

import pytest

from loopwright.core.rollout import traffic


@pytest.mark.parametrize(
    ("weight", "replicas", "stable", "canary"),
    [
        (10, 1, 1, 1),  # one stable pod: the smallest canary is already half the endpoints
        (10, 9, 9, 1),
        (25, 3, 3, 1),
        (50, 4, 4, 4),
        (75, 4, 1, 4),
        (90, 10, 1, 10),
        (0, 3, 3, 0),
        (100, 3, 0, 3),
        (20, 0, 1, 1),
    ],
)
def test_replica_split(weight: int, replicas: int, stable: int, canary: int) -> None:
    assert traffic.replica_split(weight=weight, replicas=replicas) == traffic.Split(
        stable=stable, canary=canary
    )


def test_replica_split_keeps_capacity_and_approximates_the_weight() -> None:
    for replicas in range(1, 12):
        for weight in range(1, 100):
            split = traffic.replica_split(weight=weight, replicas=replicas)
            assert max(split.stable, split.canary) == replicas
            actual = traffic.actual_weight(canary_ready=split.canary, stable_ready=split.stable)
            # Never further from the target than one pod either way could make it.
            better = [
                traffic.actual_weight(canary_ready=split.canary + d, stable_ready=split.stable)
                for d in (-1, 1)
                if split.canary + d >= 1
            ]
            if weight <= 50:
                assert all(abs(actual - weight) <= abs(b - weight) for b in better)
    with pytest.raises(ValueError, match="weight"):
        traffic.replica_split(weight=101, replicas=1)


def test_actual_weight_counts_only_ready_pods() -> None:
    assert traffic.actual_weight(canary_ready=0, stable_ready=0) == 0
    assert traffic.actual_weight(canary_ready=1, stable_ready=2) == 33
    assert traffic.actual_weight(canary_ready=1, stable_ready=0) == 100


def test_gateway_replicas() -> None:
    assert traffic.gateway_canary_replicas(weight=0, replicas=4) == 0
    assert traffic.gateway_canary_replicas(weight=10, replicas=4) == 1
    assert traffic.gateway_canary_replicas(weight=60, replicas=4) == 3


def test_httproute_and_its_actual_weight_only_once_accepted() -> None:
    route = traffic.httproute(
        name="iris",
        namespace="ns",
        labels={"a": "b"},
        parent={"name": "gw"},
        port=80,
        backends=[("iris-v1", 90), ("iris-v2", 10)],
    )
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert refs == [
        {"name": "iris-v1", "port": 80, "weight": 90},
        {"name": "iris-v2", "port": 80, "weight": 10},
    ]
    assert traffic.route_weight(route, canary_service="iris-v2") is None
    route["status"] = {"parents": [{"conditions": [{"type": "Accepted", "status": "True"}]}]}
    assert traffic.route_weight(route, canary_service="iris-v2") == 10
    assert traffic.route_weight(None, canary_service="iris-v2") is None
