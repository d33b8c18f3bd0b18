"""A small asyncio client for the Kubernetes REST API, on raw JSON dicts.

The harness watches and patches a handful of kinds; raw dicts over aiohttp keep that cheap and let
one event loop carry the node agent and the service proxy (the official client is synchronous and
converts every object into models). The kubeconfig is read with the official client's loader so
every credential form it understands works here too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes import config as kube_config
from kubernetes.client import Configuration

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class Api:
    def __init__(self, *, kubeconfig: str) -> None:
        cfg = Configuration()
        kube_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self._base = cfg.host.rstrip("/")
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        self._headers = {}
        token = cfg.get_api_key_with_prefix("authorization")
        if token:
            self._headers["Authorization"] = token
        self._ssl = ctx
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=32)
            # Watch events arrive one object per line; a large Secret must not overflow a line.
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                                  read_bufsize=4 * 1024 * 1024)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: Mapping[str, str] | None = None,
                      content_type: str = "application/json", timeout: float = 30) -> Obj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method, self._base + path, data=data, params=params, headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise ApiError(resp.status, text)
            return json.loads(text) if text else {}

    async def get(self, path: str, **params: str) -> Obj:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> Obj | None:
        try:
            return await self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def patch(self, path: str, body: Any, *, strategic: bool = False) -> Obj:
        kind = "strategic-merge-patch" if strategic else "merge-patch"
        return await self.request("PATCH", path, body=body, content_type=f"application/{kind}+json")

    async def watch(self, path: str, *, field_selector: str = "") -> AsyncIterator[tuple[str, Obj]]:
        """Yield ("SYNC", list) after every (re)list, then ("ADDED"|"MODIFIED"|"DELETED", obj).

        A relist follows any broken or expired watch, so a consumer that treats SYNC as the
        complete truth (forgetting objects missing from it) never acts on a stale view.
        """
        params = {"fieldSelector": field_selector} if field_selector else {}
        while True:
            try:
                listing = await self.request("GET", path, params=params)
                yield "SYNC", listing
                version = listing["metadata"]["resourceVersion"]
                while True:
                    watch_params = {**params, "watch": "1", "resourceVersion": version,
                                    "allowWatchBookmarks": "true", "timeoutSeconds": "290"}
                    async with self.session.get(self._base + path, params=watch_params,
                                                timeout=aiohttp.ClientTimeout(total=None, sock_read=320),
                                                ) as resp:
                        if resp.status >= 400:
                            raise ApiError(resp.status, await resp.text())
                        async for line in resp.content:
                            event = json.loads(line)
                            obj = event["object"]
                            if event["type"] == "ERROR":
                                raise ApiError(obj.get("code", 500), obj.get("message", ""))
                            version = obj["metadata"]["resourceVersion"]
                            if event["type"] != "BOOKMARK":
                                yield event["type"], obj
            except (TimeoutError, ApiError, aiohttp.ClientError, ValueError) as e:
                logger.info("watch %s restarts after: %s", path, e)
                await asyncio.sleep(1)
