"""A tiny stand-in for the Kubernetes API server on loopback: the few calls the plugin makes.

It answers as the real server does (List and Status objects, 403 and 404 bodies with the RBAC
and not-found messages, JSON merge patches, watch streams of JSON lines), records every request,
and checks the bearer token, so the plugin's client is tested end to end without a cluster.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopwright.api import names

TOKEN = "test-token"
_CUSTOM = re.compile(r"^/apis/loopwright\.dev/v1alpha1/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
_CORE = re.compile(r"^/(?:api/v1|apis/batch/v1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?(?:/(log))?$")


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target


class FakeKube:
    def __init__(self, objects: dict[names.KindName, list[dict[str, Any]]], *, namespace: str) -> None:
        self.namespace = namespace
        self.store = {k.plural: {o["metadata"]["name"]: o for o in v} for k, v in objects.items()}
        self.core: dict[str, dict[str, Any]] = {"pods": {}, "jobs": {}}
        self.logs: dict[str, str] = {}
        self.forbidden: set[tuple[str, str]] = set()
        """(verb, plural) pairs RBAC refuses."""
        self.crds_installed = True
        self.requests: list[tuple[str, str, Any]] = []
        self.watch_events: dict[str, list[dict[str, Any]]] = {}
        self.release_watch = threading.Event()
        """Watches wait for this before sending their events (so a test sees the picture before)."""
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path, *, token: str = TOKEN) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "test",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "jane", "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "test",
                            "context": {"cluster": "fake", "user": "jane", "namespace": self.namespace},
                        }
                    ],
                }
            )
        )
        return path

    @contextmanager
    def running(self) -> Iterator[FakeKube]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                return

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_PATCH(self) -> None:
                fake.handle(self, "PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()

    # -- answers -------------------------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body) if not isinstance(body, bytes) else body
        payload = data.encode() if isinstance(data, str) else data
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _status(
        self, handler: BaseHTTPRequestHandler, code: int, reason: str, message: str, details: dict[str, Any]
    ) -> None:
        self._send(
            handler,
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "details": details,
                "code": code,
            },
        )

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = None
        if method == "PATCH":
            body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.requests.append((method, handler.path, body))
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._status(handler, 401, "Unauthorized", "Unauthorized", {})
            return
        custom = _CUSTOM.match(url.path)
        if custom:
            self._custom(handler, method, custom.group(2), custom.group(3), query, body)
            return
        core = _CORE.match(url.path)
        if core:
            self._core(handler, core.group(2), core.group(3), core.group(4), query)
            return
        self._send(handler, 404, b"404 page not found")

    def _custom(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        plural: str,
        name: str | None,
        query: dict[str, str],
        body: Any,
    ) -> None:
        if not self.crds_installed:
            self._status(handler, 404, "NotFound", "the server could not find the requested resource", {})
            return
        verb = {"GET": "get" if name else "watch" if query.get("watch") else "list", "PATCH": "patch"}[method]
        if (verb, plural) in self.forbidden:
            target = f'{plural}.loopwright.dev "{name}" is' if name else f"{plural}.loopwright.dev is"
            self._status(
                handler,
                403,
                "Forbidden",
                f'{target} forbidden: User "jane" cannot {verb} resource "{plural}" in API group '
                f'"loopwright.dev" in the namespace "{self.namespace}"',
                {"name": name or "", "group": "loopwright.dev", "kind": plural},
            )
            return
        items = self.store.get(plural, {})
        if verb == "watch":
            self.release_watch.wait(10)
            events = self.watch_events.pop(plural, [])
            for event in events:  # the store changes as the events say, as on a real server
                obj = event["object"]
                if event["type"] == "DELETED":
                    items.pop(obj["metadata"]["name"], None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    items[obj["metadata"]["name"]] = obj
            lines = "".join(json.dumps(e) + "\n" for e in events)
            self._send(handler, 200, lines.encode())
            return
        if name is None:
            self._send(
                handler,
                200,
                {"kind": "List", "metadata": {"resourceVersion": "100"}, "items": list(items.values())},
            )
            return
        if name not in items:
            self._status(
                handler,
                404,
                "NotFound",
                f'{plural}.loopwright.dev "{name}" not found',
                {"name": name, "group": "loopwright.dev", "kind": plural},
            )
            return
        if method == "PATCH":
            merge(items[name], body)
        self._send(handler, 200, items[name])

    def _core(
        self,
        handler: BaseHTTPRequestHandler,
        resource: str,
        name: str | None,
        sub: str | None,
        query: dict[str, str],
    ) -> None:
        store = self.core.get(resource, {})
        if name is None:
            selector = query.get("labelSelector", "")
            key, _, value = selector.partition("=")
            items = [o for o in store.values() if (o["metadata"].get("labels") or {}).get(key) == value]
            self._send(handler, 200, {"kind": "List", "metadata": {}, "items": items})
        elif name not in store:
            self._status(
                handler, 404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource}
            )
        elif sub == "log":
            self._send(handler, 200, self.logs.get(name, "").encode())
        else:
            self._send(handler, 200, store[name])
