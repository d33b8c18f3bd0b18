"""The DriftPolicy webhook against a real HTTP server on loopback: body, token, timeout, failures."""

import asyncio
import socket
from typing import Any

from aiohttp import web

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

    delivery, _ = _run(fail, payload=_payload())
    assert not delivery.ok
    assert delivery.status == 500
    assert delivery.describe() == "failed: HTTP 500"


def test_slow_receiver_times_out():
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    delivery, _ = _run(slow, payload=_payload(), timeout=0.3)
    assert not delivery.ok
    assert delivery.status is None
    assert "no answer within 0.3s" in delivery.describe()


def test_unreachable_receiver_is_reported():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delivery = asyncio.run(notify.post(url=f"http://127.0.0.1:{port}/hook", payload=_payload(), timeout=2))
    assert not delivery.ok
    assert delivery.error is not None
    assert "Connect" in delivery.error
