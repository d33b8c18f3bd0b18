"""The one shared Kubernetes client, and helpers every controller uses.

The ``kubernetes`` package is heavy (kopf's docs measure it at most of a no-op
operator's memory), so one ApiClient is created lazily and shared. Custom-object
calls always take a :class:`~loopwright.api.kinds.Kind`, which carries the group:
our ``Deployment`` must never be confused with apps/v1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import kubernetes

from loopwright.api.kinds import Kind
from loopwright.api.labels import MANAGED_BY, child_labels

__all__ = ["MANAGED_BY", "child_labels"]

POOL_SIZE = 80
"""Above the threads that call the API at once: kopf's executor (settings.execution.max_workers
in loopwright.operator.main) plus the pipeline controller's own pool (controllers.pipeline)."""

_T = TypeVar("_T")


@functools.cache
def api_client() -> kubernetes.client.ApiClient:
    """The process-wide ApiClient: in-cluster credentials if present, else the current KUBECONFIG."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    configuration = kubernetes.client.Configuration.get_default_copy()
    # One kept-alive connection per worker thread: a smaller pool drops connections under load,
    # and every new one costs a TLS handshake.
    configuration.connection_pool_maxsize = POOL_SIZE
    return kubernetes.client.ApiClient(configuration)


def custom_objects() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client())


def core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client())


def batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(api_client())


def apps() -> kubernetes.client.AppsV1Api:
    """apps/v1 (Deployments of pods), never to be mixed up with loopwright.dev Deployments."""
    return kubernetes.client.AppsV1Api(api_client())


def is_status(exc: BaseException, code: HTTPStatus) -> bool:
    """Whether ``exc`` is an API error with the given HTTP status."""
    return isinstance(exc, kubernetes.client.ApiException) and exc.status == code


def api_message(exc: kubernetes.client.ApiException) -> str:
    """What the API server said when it refused a request (its Status message), for a user to read."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or f"{exc.status} {exc.reason}")



def create_or_adopt(*, create: Callable[[], _T], read: Callable[[], _T]) -> tuple[_T, bool]:
    """Create a deterministically named child, or read it if it already exists.

    Returns the object and whether this call created it. A 409 means an earlier
    attempt (maybe before a restart) already created it, which is success.
    """
    try:
        return create(), True
    except kubernetes.client.ApiException as exc:
        if exc.status != HTTPStatus.CONFLICT:
            raise
    return read(), False


def get_object(kind: Kind, *, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom_objects().get_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, name)
    return result


def list_objects(kind: Kind, *, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
    kwargs = {"label_selector": label_selector} if label_selector else {}
    result = custom_objects().list_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, **kwargs)
    items: list[dict[str, Any]] = result.get("items", [])
    return items


def create_object(kind: Kind, *, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
    manifest = {**body, "apiVersion": f"{kind.group}/{kind.version}", "kind": kind.kind}
    result: dict[str, Any] = custom_objects().create_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, manifest)
    return result
