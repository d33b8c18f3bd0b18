"""The optional webhook of a DriftPolicy: one JSON POST per detection, best effort.

A slow or failing receiver must never stall the checks of other policies, so
every POST has a total timeout and its failure is returned, not raised: the
controller reports it in an Event and carries on. The token (from a Secret) is
sent as ``Authorization: Bearer <token>`` and never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

DEFAULT_TIMEOUT = 5.0
USER_AGENT = "loopwright-driftpolicy"


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """How one POST went."""

    ok: bool
    status: int | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"delivered (HTTP {self.status})"
        return f"failed: {self.error}" if self.error else f"failed: HTTP {self.status}"


async def post(
    *, url: str, payload: Mapping[str, Any], token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
) -> Delivery:
    """POST ``payload`` as JSON; any 2xx is a delivery, anything else (or no answer in time) is not."""
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.post(url, json=dict(payload), headers=headers, allow_redirects=False) as response:
            await response.read()
            return Delivery(ok=200 <= response.status < 300, status=response.status)
    except TimeoutError:
        return Delivery(ok=False, error=f"no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return Delivery(ok=False, error=f"{type(exc).__name__}: {exc}")


def payload(
    *, namespace: str, policy: str, deployment: str, model_version: str, event: str, message: str,
    status: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON body: what happened, to which objects, and the raw values behind it."""
    return {
        "kind": "DriftPolicy",
        "namespace": namespace,
        "name": policy,
        "deployment": deployment,
        "modelVersion": model_version,
        "event": event,
        "message": message,
        "status": dict(status),
    }
