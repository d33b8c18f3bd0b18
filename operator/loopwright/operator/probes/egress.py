"""HTTP sessions for URLs that namespace users choose, under the operator's egress policy.

The URL is checked as written (:meth:`loopwright.core.egress.Policy.refusal`), then every address
its host resolves to is checked where aiohttp connects (a resolver that refuses), so a name that
resolves to a metadata address is refused as the literal address would be. Redirects are not
followed: a receiver cannot bounce the operator to another address.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from loopwright.core.egress import Policy


class RefusedError(aiohttp.ClientError):
    """The URL, or an address its host resolves to, is refused by the egress policy."""


class _GuardedResolver(AbstractResolver):
    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            why = self._policy.resolved_refusal(host, ipaddress.ip_address(result["host"]))
            if why is not None:
                raise RefusedError(why)
        return results

    async def close(self) -> None:
        await self._inner.close()


def session(policy: Policy, *, timeout: float, **kwargs: Any) -> aiohttp.ClientSession:
    """A session whose connections honour ``policy`` (check the URL with ``policy.refusal`` first)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=_GuardedResolver(policy)),
                                 timeout=aiohttp.ClientTimeout(total=timeout), **kwargs)
