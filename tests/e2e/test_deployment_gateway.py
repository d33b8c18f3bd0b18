"""traffic.mode gatewayAPI: the canary's weight is set on an HTTPRoute, and reported as actual only
once a Gateway accepted the route.

The local cluster has no Gateway controller; when the Gateway API CRDs are missing the test
installs a minimal HTTPRoute CRD (schema-less) and removes it afterwards, and plays the
Gateway controller's part by setting the route's Accepted condition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from e2e import deployment_support as lw

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

ROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")
CRD_NAME = "httproutes.gateway.networking.k8s.io"


@pytest.fixture
def httproute_crd(kube: Any) -> Iterator[None]:
    extensions = client.ApiextensionsV1Api(kube.api)
    try:
        extensions.read_custom_resource_definition(CRD_NAME)
        yield  # a real Gateway API installation (kind with Gateway API): leave it alone
        return
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    extensions.create_custom_resource_definition(
        {
            # *.k8s.io groups need this annotation; the Gateway API project's CRDs carry the same one.
            "metadata": {
                "name": CRD_NAME,
                "annotations": {
                    "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"
                },
            },
            "spec": {
                "group": ROUTES[0],
                "scope": "Namespaced",
                "names": {
                    "kind": "HTTPRoute",
                    "plural": "httproutes",
                    "singular": "httproute",
                    "listKind": "HTTPRouteList",
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(CRD_NAME).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    kube.wait(established, timeout=30, what="the HTTPRoute CRD")
    try:
        yield
    finally:
        with contextlib.suppress(client.ApiException):
            extensions.delete_custom_resource_definition(CRD_NAME)


def _route(kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        route: dict[str, Any] = kube.custom.get_namespaced_custom_object(
            *ROUTES[:2], namespace, ROUTES[2], name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return route


def _backends(route: dict[str, Any] | None) -> list[tuple[str, int]]:
    if route is None:
        return []
    return [(r["name"], r["weight"]) for rule in route["spec"]["rules"] for r in rule["backendRefs"]]


def test_gateway_api_weights_on_an_httproute(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, httproute_crd: None
) -> None:
    body = lw.deployment(
        "iris",
        model="iris",
        rollout={"steps": [{"weight": 20}], "analysis": {"interval": "2s", "minRequests": 5}},
    )
    body["spec"]["traffic"] = {"mode": "gatewayAPI", "gateway": {"parentRef": {"name": "gw"}}}
    lw.register(kube, s3, namespace, model="iris", version=1, kind="good")
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", body)
    lw.wait_serving(kube, namespace, "iris", timeout=120)
    route = kube.wait(lambda: _route(kube, namespace, "iris"), timeout=30, what="the HTTPRoute")
    assert _backends(route) == [("iris-v1", 100)]
    assert route["spec"]["parentRefs"] == [{"name": "gw"}]
    assert kube.core.read_namespaced_service("iris-v1", namespace).spec.selector == {
        "loopwright.dev/deployment": "iris",
        "loopwright.dev/version": "1",
    }

    lw.register(kube, s3, namespace, model="iris", version=2, kind="good")
    obj = lw.wait_phase(kube, namespace, "iris", "Paused", timeout=120)
    assert _backends(_route(kube, namespace, "iris")) == [("iris-v1", 80), ("iris-v2", 20)]
    assert obj["status"]["canary"]["desiredWeight"] == 20
    assert obj["status"]["canary"]["weight"] == 0  # no Gateway has accepted the route yet

    # A Gateway controller accepts the route: the weight is now real, and reported.
    kube.custom.patch_namespaced_custom_object_status(
        *ROUTES[:2],
        namespace,
        ROUTES[2],
        "iris",
        {
            "status": {
                "parents": [
                    {
                        "parentRef": {"name": "gw"},
                        "controllerName": "example.com/gateway",
                        "conditions": [
                            {
                                "type": "Accepted",
                                "status": "True",
                                "reason": "Accepted",
                                "message": "",
                                "lastTransitionTime": "2026-01-01T00:00:00Z",
                            }
                        ],
                    }
                ]
            }
        },
    )
    kube.wait(
        lambda: lw.get(kube, namespace, "deployments", "iris")["status"]["canary"]["weight"] == 20,
        timeout=60,
        what="the accepted weight reported",
        interval=1,
    )

    lw.patch_rollout(kube, namespace, "iris", {"promote": {"version": 2}})
    kube.wait(
        lambda: _backends(_route(kube, namespace, "iris")) == [("iris-v2", 100)],
        timeout=120,
        what="all traffic on version 2",
        interval=1,
    )
    kube.wait(
        lambda: (
            "iris-v1" not in {s.metadata.name for s in kube.core.list_namespaced_service(namespace).items}
        ),
        timeout=60,
        what="the per-version Service of version 1 removed",
    )
    assert lw.get(kube, namespace, "deployments", "iris")["status"]["stable"]["version"] == 2
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "iris")
