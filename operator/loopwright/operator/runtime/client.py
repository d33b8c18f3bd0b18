"""The operator's one Kubernetes API client: aiohttp, on kopf's event loop, with kopf's credentials.

kopf logs in through :func:`login` (a ``@kopf.on.login`` handler, wired in
:mod:`loopwright.operator.main`); the same :class:`kopf.ConnectionInfo` builds this client's
session, so the watches and the reconciles share one identity and no second client library
(the synchronous ``kubernetes`` package and its thread pools) is loaded.

Objects are plain dicts (the API's JSON): no model classes to convert to and from. Every call
names its :class:`Resource`, which carries the API group, so our ``Deployment`` is never
confused with apps/v1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from loopwright.api.kinds import Kind

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "loopwright"
CONNECTIONS = 32
UNREACHABLE: tuple[type[BaseException], ...] = (aiohttp.ClientConnectionError, asyncio.TimeoutError)
"""What a request raises when the API server cannot be reached (refused, reset, timed out)."""
"""Concurrent requests to the API server (the queue's workers share them)."""


@dataclass(frozen=True)
class Resource:
    """One API resource: where it lives in the API (``group`` "" is the core group)."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{prefix}/namespaces/{namespace}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


def resource(kind: Kind) -> Resource:
    """The API resource of one of our kinds."""
    return Resource(kind.group, kind.version, kind.plural, kind.kind)


JOBS = Resource("batch", "v1", "jobs", "Job")
PODS = Resource("", "v1", "pods", "Pod")
SECRETS = Resource("", "v1", "secrets", "Secret")
SERVICES = Resource("", "v1", "services", "Service")
EVENTS = Resource("", "v1", "events", "Event")
WORKLOADS = Resource("apps", "v1", "deployments", "Deployment")
"""apps/v1 Deployments (of predictor pods), never to be mixed up with loopwright.dev Deployments."""
AUTOSCALERS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
DISRUPTION_BUDGETS = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")


class ApiError(Exception):
    """The API server refused a request; ``message`` is what it said (its Status message)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    def is_(self, code: HTTPStatus) -> bool:
        return self.status == code


def is_status(exc: BaseException, code: HTTPStatus) -> bool:
    """Whether ``exc`` is an API error with the given HTTP status."""
    return isinstance(exc, ApiError) and exc.status == code


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=(base64.b64decode(info.ca_data).decode() if info.ca_data else None))
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl loads client certificates from files only: write them where only we can read them.
        folder = Path(tempfile.mkdtemp(prefix="loopwright-tls-"))
        cert, key = folder / "client.crt", folder / "client.key"
        cert.write_bytes(base64.b64decode(info.certificate_data))
        key.write_bytes(base64.b64decode(info.private_key_data))
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


def _headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


class Client:
    """Async calls on namespaced resources; 404 on a read is ``None``, other refusals :class:`ApiError`.

    The session is opened on the first request, once kopf has logged in (``credentials``), and
    opened anew when the credentials change (kopf logs in again after a 401).
    """

    def __init__(self, credentials: Credentials, *, timeout: float = 60.0) -> None:
        self.credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._info: kopf.ConnectionInfo | None = None

    async def _open(self) -> tuple[aiohttp.ClientSession, str]:
        info = await self.credentials.wait()
        if self._session is None or self._session.closed or info is not self._info:
            if self._session is not None:
                await self._session.close()
            connector = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=_ssl_context(info))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=info.trust_env,
                headers={"Accept": "application/json", "User-Agent": "loopwright-operator", **_headers(info)})
            self._info = info
        return self._session, info.server.rstrip("/")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: Mapping[str, str] | None = None, content_type: str = "application/json") -> Obj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in range(2):
            session, server = await self._open()
            async with session.request(method, server + path, data=data, params=params,
                                       headers=headers) as response:
                text = await response.text()
                if response.status == HTTPStatus.UNAUTHORIZED and attempt == 0 and self.credentials.refresh():
                    continue  # a rotated service account token: read it again, once
                if response.status >= HTTPStatus.BAD_REQUEST:
                    raise _error(response.status, response.reason or "", text)
                result: Obj = json.loads(text) if text else {}
                return result
        raise AssertionError("unreachable")

    # -- verbs -----------------------------------------------------------------------------------------

    async def get(self, res: Resource, namespace: str, name: str, *,
                  subresource: str | None = None) -> Obj | None:
        try:
            return await self.request("GET", res.path(namespace, name, subresource))
        except ApiError as exc:
            if exc.status == HTTPStatus.NOT_FOUND:
                return None
            raise

    async def list(self, res: Resource, namespace: str, *, selector: str | None = None) -> list[Obj]:
        params = {"labelSelector": selector} if selector else None
        items: list[Obj] = (await self.request("GET", res.path(namespace), params=params)).get("items", [])
        for item in items:  # a list's items carry no apiVersion/kind: what kopf and the builders expect
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        return items

    async def create(self, res: Resource, namespace: str, body: Mapping[str, Any]) -> Obj:
        manifest = {**body, "apiVersion": res.api_version, "kind": res.kind}
        return await self.request("POST", res.path(namespace), body=manifest)

    async def create_or_adopt(self, res: Resource, body: Mapping[str, Any]) -> tuple[Obj, bool]:
        """Create a deterministically named child, or read it if it exists (409: an earlier attempt,
        maybe before a restart, made it). Returns the object and whether this call created it."""
        meta = body["metadata"]
        try:
            return await self.create(res, meta["namespace"], body), True
        except ApiError as exc:
            if exc.status != HTTPStatus.CONFLICT:
                raise
        existing = await self.get(res, meta["namespace"], meta["name"])
        if existing is None:  # created and deleted in between: try once more
            return await self.create(res, meta["namespace"], body), True
        return existing, False

    async def patch(self, res: Resource, namespace: str, name: str, body: Mapping[str, Any], *,
                    subresource: str | None = None) -> Obj:
        """A JSON merge patch (``None`` deletes a key)."""
        return await self.request("PATCH", res.path(namespace, name, subresource), body=body,
                                  content_type=MERGE_PATCH)

    async def patch_status(self, res: Resource, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        return await self.patch(res, namespace, name, body, subresource="status")

    async def apply(self, res: Resource, manifest: Mapping[str, Any], *, manager: str = FIELD_MANAGER) -> Obj:
        """Server-side apply under our field manager (or another one of ours): idempotent, a no-op
        when nothing changed."""
        meta = manifest["metadata"]
        return await self.request(
            "PATCH", res.path(meta["namespace"], meta["name"]), body=dict(manifest), content_type=APPLY_PATCH,
            params={"fieldManager": manager, "force": "true"})

    async def scale(self, res: Resource, namespace: str, name: str, replicas: int) -> Obj:
        """Set the replicas of a workload through its scale subresource."""
        return await self.patch(res, namespace, name, {"spec": {"replicas": replicas}}, subresource="scale")

    async def delete(self, res: Resource, namespace: str, name: str) -> bool:
        """Delete with its dependents in the background; False when it was gone already."""
        try:
            await self.request("DELETE", res.path(namespace, name), body={"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status == HTTPStatus.NOT_FOUND:
                return False
            raise
        return True

    async def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the cluster serves a resource (e.g. Gateway API HTTPRoutes)."""
        try:
            found = await self.request("GET", f"/apis/{group}/{version}")
        except ApiError:
            return False
        return any(r.get("name") == plural for r in found.get("resources") or ())


def _error(status: int, reason: str, text: str) -> ApiError:
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    return ApiError(status, reason, str(message or text[:200] or f"{status} {reason}"))


# -- credentials ---------------------------------------------------------------------------------------


class Credentials:
    """What kopf logged in with (:func:`login`), shared with the client."""

    def __init__(self) -> None:
        self.info: kopf.ConnectionInfo | None = None
        self._settings: kopf.OperatorSettings | None = None
        self._ready: asyncio.Event | None = None

    def login(self, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
        """In-cluster service account, else the current KUBECONFIG: kopf's own two logins, no other
        client library. The ``@kopf.on.login`` handler returns this to kopf."""
        self._settings = settings
        info = (kopf.login_with_service_account(settings=settings)
                or kopf.login_with_kubeconfig(settings=settings))
        if info is not None:
            self.set(info)
        return info

    def set(self, info: kopf.ConnectionInfo) -> None:
        self.info = info
        if self._ready is not None:
            self._ready.set()

    def refresh(self) -> bool:
        """Log in again (after a 401); whether that gave other credentials."""
        before = self.info
        return self._settings is not None and self.login(self._settings) is not None and self.info != before

    async def wait(self) -> kopf.ConnectionInfo:
        if self.info is None:
            self._ready = self._ready or asyncio.Event()
            await self._ready.wait()
        assert self.info is not None
        return self.info
