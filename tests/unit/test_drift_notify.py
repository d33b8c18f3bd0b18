"""The DriftPolicy webhook against a real HTTP server on loopback: body, token, timeout, failures,
retries, CloudEvents and the egress policy."""

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp import web

from loopwright.api.driftpolicy import WebhookFormat
from loopwright.core.egress import Policy
from loopwright.operator.probes import webhook as notify


async def _serve(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


def _run(handler: Any, **kwargs: Any) -> tuple[notify.Delivery, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        seen.append({"json": await request.json(), "auth": request.headers.get("Authorization"),
                     "agent": request.headers.get("User-Agent")})
        return await handler(request)

    async def main() -> notify.Delivery:
        runner, url = await _serve(recording)
        try:
            return await notify.post(url=url, **kwargs)
        finally:
            await runner.cleanup()

    return asyncio.run(main()), seen


def _payload() -> dict[str, Any]:
    return notify.payload(namespace="ns", policy="p", deployment="iris", model_version="iris-v1",
                          event="DriftConfirmed", message="drift share 1.00", status={"driftShare": 1.0})


async def _ok(_: web.Request) -> web.Response:
    return web.Response(status=204)


def test_posts_json_with_bearer_token():
    delivery, seen = _run(_ok, payload=_payload(), token="s3cret")
    assert delivery.ok
    assert delivery.status == 204
    assert seen[0]["auth"] == "Bearer s3cret"
    assert seen[0]["agent"] == notify.USER_AGENT
    assert seen[0]["json"]["event"] == "DriftConfirmed"
    assert seen[0]["json"]["status"] == {"driftShare": 1.0}
    assert seen[0]["json"]["modelVersion"] == "iris-v1"


def test_no_token_no_authorization_header():
    delivery, seen = _run(_ok, payload=_payload())
    assert delivery.ok
    assert seen[0]["auth"] is None


def test_error_status_is_reported_not_raised():
    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    delivery, _ = _run(fail, payload=_payload(), backoff=0.01)
    assert not delivery.ok
    assert delivery.status == 500
    assert delivery.describe() == "failed: HTTP 500 (3 attempts)"


def test_slow_receiver_times_out():
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    delivery, _ = _run(slow, payload=_payload(), timeout=0.3, attempts=1)
    assert not delivery.ok
    assert delivery.status is None
    assert "no answer within 0.3s" in delivery.describe()


def test_unreachable_receiver_is_reported():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delivery = asyncio.run(notify.post(url=f"http://127.0.0.1:{port}/hook", payload=_payload(), timeout=2,
                                       backoff=0))
    assert not delivery.ok
    assert delivery.error is not None
    assert "Connect" in delivery.error


def test_5xx_and_429_are_retried_with_backoff_4xx_is_not():
    answers = [503, 429, 204]

    async def flaky(_: web.Request) -> web.Response:
        return web.Response(status=answers.pop(0))

    delivery, seen = _run(flaky, payload=_payload(), backoff=0.01)
    assert delivery.ok
    assert (delivery.attempts, len(seen)) == (3, 3)
    assert delivery.describe() == "delivered (HTTP 204) (3 attempts)"

    async def bad(_: web.Request) -> web.Response:
        return web.Response(status=400, text="a body that must go nowhere")

    delivery, seen = _run(bad, payload=_payload(), backoff=0.01)
    assert (delivery.ok, delivery.status, len(seen)) == (False, 400, 1)
    assert "body" not in delivery.describe()


def test_attempts_are_bounded():
    async def down(_: web.Request) -> web.Response:
        return web.Response(status=502)

    delivery, seen = _run(down, payload=_payload(), backoff=0.01, attempts=2)
    assert (delivery.ok, delivery.status, delivery.attempts, len(seen)) == (False, 502, 2, 2)


def test_cloud_events_structured_mode():
    types: list[str | None] = []

    async def receiver(request: web.Request) -> web.Response:
        types.append(request.headers.get("Content-Type"))
        return web.Response(status=202)

    delivery, seen = _run(receiver, payload=_payload(), format=WebhookFormat.CLOUD_EVENTS)
    assert delivery.ok
    assert types == [notify.CLOUDEVENTS_CONTENT_TYPE]
    event = seen[0]["json"]
    assert event["specversion"] == "1.0"
    assert event["type"] == "dev.loopwright.driftpolicy.driftConfirmed"
    assert event["source"] == "/apis/loopwright.dev/v1alpha1/namespaces/ns/driftpolicies/p"
    assert event["subject"] == "iris"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == _payload()
    assert event["id"]
    assert event["time"].endswith("Z")


def test_refused_urls_are_never_contacted():
    for url, policy in (("http://169.254.169.254/latest/meta-data/", Policy()),
                        ("http://[::ffff:169.254.169.254]/", Policy()),
                        ("http://metadata.google.internal/", Policy()),
                        ("http://127.0.0.1:9/hook", Policy(allow=("hooks.example.com",)))):
        delivery = asyncio.run(notify.post(url=url, payload=_payload(), policy=policy))
        assert not delivery.ok
        assert delivery.attempts == 1
        assert delivery.error is not None
        assert delivery.error.startswith("refused:")


def test_a_name_resolving_to_a_metadata_address_is_refused_where_it_connects(monkeypatch: Any) -> None:
    async def rebinding(_self: Any, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[Any]:
        return [{"hostname": host, "host": "169.254.169.254", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": 0}]

    monkeypatch.setattr(aiohttp.ThreadedResolver, "resolve", rebinding)
    delivery = asyncio.run(notify.post(url="http://innocent.example.com/hook", payload=_payload(), backoff=0))
    assert not delivery.ok
    assert delivery.attempts == 1  # a refusal is final
    assert delivery.error == ("refused: innocent.example.com resolves to 169.254.169.254 is a link-local "
                              "address (cloud metadata services answer there)")


def test_an_allow_list_of_networks_is_checked_on_resolved_addresses():
    async def main() -> notify.Delivery:
        runner, url = await _serve(_ok)
        try:
            return await notify.post(url=url.replace("127.0.0.1", "localhost"), payload=_payload(),
                                     policy=Policy(allow=("10.0.0.0/8",)))
        finally:
            await runner.cleanup()

    delivery = asyncio.run(main())
    assert not delivery.ok
    assert "not in the operator's egress allow-list" in (delivery.error or "")
