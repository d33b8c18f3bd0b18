"""The optional webhook of a DriftPolicy: one POST per detection, retried with backoff, best effort.

A slow or failing receiver must never stall the checks of other policies, so every attempt has
a total timeout, the attempts are bounded, and the failure is returned, not raised: the
controller reports it in an Event and carries on. Only what a retry may cure is retried (no
answer, 429, 5xx); a 4xx or a refused URL is final. The token (from a Secret) is sent as
``Authorization: Bearer <token>`` and never logged; the receiver's answer is read and dropped,
never copied anywhere. The URL must pass the operator's egress policy (no link-local or metadata
addresses, the allow-list), redirects are not followed.

``cloudEvents`` sends the summary as the data of a CloudEvents 1.0 event in structured mode.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from loopwright.api.common import API_VERSION
from loopwright.api.driftpolicy import WebhookFormat
from loopwright.core.egress import Policy
from loopwright.operator.probes import egress

DEFAULT_TIMEOUT = 5.0
ATTEMPTS = 3
BACKOFF = 1.0
"""Seconds before the second attempt; doubled before each next one."""
USER_AGENT = "loopwright-driftpolicy"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """How the POST went (its last attempt)."""

    ok: bool
    status: int | None = None
    error: str | None = None
    attempts: int = 1

    def describe(self) -> str:
        tries = f" ({self.attempts} attempts)" if self.attempts > 1 else ""
        if self.ok:
            return f"delivered (HTTP {self.status}){tries}"
        return (f"failed: {self.error}" if self.error else f"failed: HTTP {self.status}") + tries

    @property
    def retriable(self) -> bool:
        return not self.ok and (self.status is None or self.status == 429 or self.status >= 500)


async def post(
    *, url: str, payload: Mapping[str, Any], token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    policy: Policy | None = None, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
    format: WebhookFormat = WebhookFormat.JSON,
) -> Delivery:
    """POST ``payload``; any 2xx is a delivery. Retries what a retry may cure, ``attempts`` in all."""
    policy = policy or Policy()
    if (why := policy.refusal(url)) is not None:
        return Delivery(ok=False, error=f"refused: {why}")
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = dict(payload)
    if format == WebhookFormat.CLOUD_EVENTS:
        body = cloud_event(payload)
        headers["Content-Type"] = CLOUDEVENTS_CONTENT_TYPE
    delivery = Delivery(ok=False, error="not attempted")
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            await asyncio.sleep(backoff * 2 ** (attempt - 2))
        delivery = await _attempt(url, body, headers=headers, timeout=timeout, policy=policy, attempt=attempt)
        if not delivery.retriable:
            break
    return delivery


async def _attempt(url: str, body: Mapping[str, Any], *, headers: Mapping[str, str], timeout: float,
                   policy: Policy, attempt: int) -> Delivery:
    try:
        async with egress.session(policy, timeout=timeout) as session, \
                session.post(url, json=dict(body), headers=dict(headers), allow_redirects=False) as response:
            await response.read()
            return Delivery(ok=200 <= response.status < 300, status=response.status, attempts=attempt)
    except TimeoutError:
        return Delivery(ok=False, error=f"no answer within {timeout:g}s", attempts=attempt)
    except egress.RefusedError as exc:
        return Delivery(ok=False, status=0, error=f"refused: {exc}", attempts=attempt)
    except aiohttp.ClientError as exc:
        return Delivery(ok=False, error=f"{type(exc).__name__}: {exc}", attempts=attempt)


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


def cloud_event(summary: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """``summary`` (:func:`payload`) as a CloudEvents 1.0 event in structured mode."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/apis/{API_VERSION}/namespaces/{summary['namespace']}/driftpolicies/{summary['name']}",
        "type": f"dev.loopwright.driftpolicy.{str(summary['event'])[:1].lower()}{str(summary['event'])[1:]}",
        "subject": str(summary["deployment"]),
        "time": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": dict(summary),
    }
