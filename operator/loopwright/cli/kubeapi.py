"""A thin Kubernetes API client for the plugin: JSON over HTTPS with the user's kubeconfig.

Only what the commands need: get, list, merge patch, watch and pod logs. Errors become
:class:`~loopwright.cli.errors.ApiError` (the server's own message, e.g. RBAC's "User x cannot
patch ...") or :class:`~loopwright.cli.errors.CliError` (the server cannot be reached).
One kept-alive connection per thread.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from loopwright.api.names import GROUP, VERSION, KindName
from loopwright.cli.errors import ApiError, CliError
from loopwright.cli.kubeconfig import Connection

FIELD_MANAGER = "kubectl-loopwright"
MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "kubectl-loopwright"
_RETRIED = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Api:
    """Requests to one API server as one user."""

    def __init__(self, connection: Connection, *, timeout: float = 30.0) -> None:
        self.connection = connection
        self.timeout = timeout
        url = urllib.parse.urlsplit(connection.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise CliError(f"cannot use API server address {connection.server!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._local = threading.local()

    @property
    def namespace(self) -> str:
        return self.connection.namespace

    # -- transport ---------------------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self.connection.ssl_context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _send(self, conn: http.client.HTTPConnection, method: str, url: str, body: bytes | None,
              content_type: str | None) -> http.client.HTTPResponse:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **self.connection.headers}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, url, body=body, headers=headers)
            return conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            raise CliError(f"the API server {self.connection.server} (context {self.connection.context}) "
                           f"presented a certificate that is not trusted: {exc.verify_message}") from exc
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, _RETRIED):
                raise
            raise CliError(f"cannot reach the API server {self.connection.server} (context "
                           f"{self.connection.context}): {_reason(exc)}") from exc

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        items = {k: str(v).lower() if isinstance(v, bool) else str(v)
                 for k, v in (query or {}).items() if v is not None}
        return self._prefix + path + (("?" + urllib.parse.urlencode(items)) if items else "")

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str | None = None, what: str = "") -> Any:
        """One request; the decoded JSON answer. ``what`` names the object for error messages."""
        url = self._url(path, query)
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect(self.timeout)
            try:
                response = self._send(conn, method, url, data, content_type or ("application/json"
                                                                                if data else None))
                payload = response.read()
                break
            except _RETRIED as exc:
                conn.close()
                self._local.conn = None
                if attempt or method not in ("GET", "PATCH"):
                    raise CliError(f"the API server {self.connection.server} closed the connection: "
                                   f"{_reason(exc)}") from exc
        if response.status >= HTTPStatus.BAD_REQUEST:
            raise _error(response.status, response.reason, payload, what=what, connection=self.connection)
        return json.loads(payload) if payload else None

    def stream(self, path: str, *, query: Mapping[str, Any] | None = None, what: str = "",
               timeout: float | None = None) -> Iterator[bytes]:
        """The lines of a long answer (a watch, followed logs), on a connection of its own."""
        conn = self._connect(timeout)
        try:
            response = self._send(conn, "GET", self._url(path, query), None, None)
        except _RETRIED as exc:
            raise CliError(f"the API server {self.connection.server} closed the connection: "
                           f"{_reason(exc)}") from exc
        try:
            if response.status >= HTTPStatus.BAD_REQUEST:
                raise _error(response.status, response.reason, response.read(), what=what,
                             connection=self.connection)
            while line := response.readline():
                yield line
        finally:
            conn.close()

    # -- resources ---------------------------------------------------------------------------------

    @staticmethod
    def path(kind: KindName, namespace: str, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{kind.plural}"
        return f"{base}/{_q(name)}" if name else base

    def get(self, kind: KindName, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        result: dict[str, Any] = self.request("GET", self.path(kind, ns, name),
                                              what=f'{kind.resource} "{name}" in namespace "{ns}"')
        return result

    def list(self, kind: KindName, *, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """The objects of a kind in the namespace, and the list's resourceVersion (to watch from)."""
        ns = namespace or self.namespace
        result = self.request("GET", self.path(kind, ns), what=f"{kind.resource} in namespace {ns!r}")
        return list(result.get("items") or []), str((result.get("metadata") or {}).get("resourceVersion", ""))

    def patch(self, kind: KindName, name: str, patch: Mapping[str, Any], *,
              namespace: str | None = None) -> dict[str, Any]:
        """A JSON merge patch, recorded under the field manager ``kubectl-loopwright``."""
        ns = namespace or self.namespace
        result: dict[str, Any] = self.request(
            "PATCH", self.path(kind, ns, name), query={"fieldManager": FIELD_MANAGER}, body=patch,
            content_type=MERGE_PATCH, what=f'{kind.resource} "{name}" in namespace "{ns}"')
        return result

    def watch(self, kind: KindName, *, resource_version: str, namespace: str | None = None,
              timeout_seconds: int = 300) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type": ..., "object": ...}``) from ``resource_version``, until the server
        ends the watch (after ``timeout_seconds``)."""
        ns = namespace or self.namespace
        query = {"watch": True, "resourceVersion": resource_version, "allowWatchBookmarks": True,
                 "timeoutSeconds": timeout_seconds}
        for line in self.stream(self.path(kind, ns), query=query, what=f"{kind.resource} in namespace {ns!r}",
                                timeout=timeout_seconds + 30):
            if line.strip():
                yield json.loads(line)

    def core(self, resource: str, name: str | None = None, *, namespace: str | None = None,
             sub: str | None = None, query: Mapping[str, Any] | None = None) -> Any:
        """A GET of the core API (pods, their logs), or of batch/v1 Jobs."""
        ns = namespace or self.namespace
        group = "/apis/batch/v1" if resource == "jobs" else "/api/v1"
        path = f"{group}/namespaces/{_q(ns)}/{resource}" + (f"/{_q(name)}" if name else "")
        path += f"/{sub}" if sub else ""
        what = f'{resource.removesuffix("s")} "{name}" in namespace "{ns}"' if name else resource
        if sub == "log":
            return self.stream(path, query=query, what=what)
        return self.request("GET", path, query=query, what=what)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the cluster running?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    return str(exc) or type(exc).__name__


def _error(status: int, reason: str, payload: bytes, *, what: str, connection: Connection) -> ApiError:
    """An API error with a message a person can act on."""
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = {}
    message = str(doc.get("message") or payload.decode(errors="replace").strip() or reason)
    details = doc.get("details") or {}
    if status == HTTPStatus.NOT_FOUND:
        if not details and "could not find the requested resource" in message:
            resource = what.split(" ", maxsplit=1)[0]
            message = (f"the cluster does not serve {resource} (context {connection.context}): "
                       "are Loopwright's CRDs installed? (kubectl apply --server-side -k manifests/base)")
        else:
            message = f"{what} not found" if what else message
    elif status == HTTPStatus.FORBIDDEN:
        message = f"forbidden by RBAC: {message}"
    elif status == HTTPStatus.UNAUTHORIZED:
        message = (f"the API server did not accept the credentials of context {connection.context} "
                   "(401 Unauthorized): log in again or check the kubeconfig")
    return ApiError(message, status=status, reason=str(doc.get("reason") or reason))
