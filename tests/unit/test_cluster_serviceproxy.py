"""The service proxy's routing table: ClusterIP ports to ready endpoints, from EndpointSlices."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

from serviceproxy import Route, routes


def _service(name: str, ip: str, *ports: dict[str, Any], namespace: str = "shop") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"clusterIP": ip, "ports": list(ports)},
    }


def _slice(
    service: str,
    ports: list[dict[str, Any]],
    *endpoints: tuple[str, dict[str, bool]],
    namespace: str = "shop",
    name: str = "",
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name or f"{service}-x",
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": ports,
        "endpoints": [{"addresses": [ip], "conditions": cond} for ip, cond in endpoints],
    }


def _backends(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> dict[Any, list[Any]]:
    return {frontend: route.backends for frontend, route in routes(services, slices).items()}


READY = {"ready": True, "serving": True, "terminating": False}
UNREADY = {"ready": False, "serving": False, "terminating": False}
DRAINING = {"ready": False, "serving": True, "terminating": True}


def test_named_target_ports_come_from_the_slice() -> None:
    svc = _service(
        "web",
        "10.96.0.20",
        {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
    )
    eps = _slice(
        "web",
        [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9100, "protocol": "TCP"},
        ],
        ("10.244.0.3", READY),
        ("10.244.0.2", READY),
        ("10.244.0.4", UNREADY),
    )
    assert _backends([svc], [eps]) == {
        ("10.96.0.20", 80): [("10.244.0.2", 8080), ("10.244.0.3", 8080)],
        ("10.96.0.20", 9090): [("10.244.0.2", 9100), ("10.244.0.3", 9100)],
    }


def test_endpoints_merge_across_slices_and_unset_ready_counts_as_ready() -> None:
    svc = _service("web", "10.96.0.20", {"port": 80, "protocol": "TCP"})
    ports = [{"port": 8080, "protocol": "TCP"}]
    first = _slice("web", ports, ("10.244.0.2", {}), name="a")
    second = _slice("web", ports, ("10.244.0.3", READY), name="b")
    other = _slice("web", ports, ("10.244.0.9", READY), namespace="elsewhere")
    assert _backends([svc], [first, second, other]) == {
        ("10.96.0.20", 80): [("10.244.0.2", 8080), ("10.244.0.3", 8080)]
    }


def test_terminating_but_serving_endpoints_are_a_fallback_only() -> None:
    svc = _service("web", "10.96.0.20", {"port": 80})
    ports = [{"port": 8080}]
    assert _backends([svc], [_slice("web", ports, ("10.244.0.2", DRAINING))]) == {
        ("10.96.0.20", 80): [("10.244.0.2", 8080)]
    }
    both = _slice("web", ports, ("10.244.0.2", DRAINING), ("10.244.0.3", READY))
    assert _backends([svc], [both]) == {("10.96.0.20", 80): [("10.244.0.3", 8080)]}


def test_services_without_a_cluster_ip_or_tcp_are_not_proxied() -> None:
    services = [
        _service("headless", "None", {"port": 80}),
        {
            "metadata": {"namespace": "shop", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "x"},
        },
        _service(
            "dns",
            "10.96.0.10",
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ),
        _service("empty", "10.96.0.11", {"port": 80}),
    ]
    assert _backends(services, []) == {("10.96.0.10", 53): [], ("10.96.0.11", 80): []}


def test_the_kubernetes_service_reaches_the_api_server() -> None:
    svc = _service(
        "kubernetes",
        "10.96.0.1",
        {"name": "https", "port": 443, "targetPort": 6443, "protocol": "TCP"},
        namespace="default",
    )
    eps = _slice(
        "kubernetes",
        [{"name": "https", "port": 6443, "protocol": "TCP"}],
        ("10.244.0.1", READY),
        namespace="default",
        name="kubernetes",
    )
    assert _backends([svc], [eps]) == {("10.96.0.1", 443): [("10.244.0.1", 6443)]}


def test_endpoints_that_left_the_slices_are_not_known_any_more() -> None:
    svc = _service("web", "10.96.0.20", {"port": 80})
    eps = _slice(
        "web", [{"port": 8080}], ("10.244.0.2", READY), ("10.244.0.3", DRAINING), ("10.244.0.4", UNREADY)
    )
    route = routes([svc], [eps])[("10.96.0.20", 80)]
    assert route == Route(
        backends=[("10.244.0.2", 8080)],
        known=frozenset({("10.244.0.2", 8080), ("10.244.0.3", 8080), ("10.244.0.4", 8080)}),
    )
