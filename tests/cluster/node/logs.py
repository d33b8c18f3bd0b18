"""Container logs: written in the CRI file format, served on the kubelet's HTTPS port.

Each line is `<RFC3339Nano> <stdout|stderr> <F|P> <text>` as container runtimes write them (the
container's monitor, node/monitor.py, writes them), so
`timestamps=true` and `sinceSeconds` need no second source. The API server proxies `kubectl logs`
to `GET /containerLogs/{namespace}/{pod}/{container}` here, authenticating with its kubelet client
certificate, which this server checks against the cluster CA.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Query:
    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    previous: bool = False
    since_seconds: int | None = None
    limit_bytes: int | None = None


def render(record: bytes, *, timestamps: bool) -> bytes:
    """A CRI record as kubectl prints it: the text, with the timestamp first if asked for."""
    at, _, rest = record.rstrip(b"\n").partition(b" ")
    _stream, _, rest = rest.partition(b" ")
    tag, _, text = rest.partition(b" ")
    newline = b"" if tag == b"P" else b"\n"
    return (at + b" " if timestamps else b"") + text + newline


def select(records: list[bytes], query: Query, *, now: datetime.datetime) -> Iterator[bytes]:
    """Apply sinceSeconds and tailLines to complete records (tail counts full lines)."""
    if query.since_seconds is not None:
        cutoff = (now - datetime.timedelta(seconds=query.since_seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        records = [r for r in records if r[:26].decode(errors="replace") >= cutoff]
    if query.tail_lines is not None:
        kept: deque[bytes] = deque()
        full = 0
        for record in reversed(records):
            is_full = record.split(b" ", 3)[2:3] == [b"F"]
            if is_full:
                if full == query.tail_lines:
                    break
                full += 1
            kept.appendleft(record)
        records = list(kept)
    return (render(r, timestamps=query.timestamps) for r in records)


@dataclass(frozen=True)
class LogSource:
    """Where a container's log lives and whether more may still be written to it."""

    path: Path
    active: Callable[[], bool]
    waiting: str = ""  # why there is no log yet (ContainerCreating...), as the kubelet answers


Resolver = Callable[[str, str, str, bool], LogSource | None]


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes"}


def _int(value: str | None) -> int | None:
    return None if value in (None, "") else int(value)


def parse_query(params: dict[str, str]) -> Query:
    return Query(follow=_flag(params.get("follow")), tail_lines=_int(params.get("tailLines")),
                 timestamps=_flag(params.get("timestamps")), previous=_flag(params.get("previous")),
                 since_seconds=_int(params.get("sinceSeconds")), limit_bytes=_int(params.get("limitBytes")))


async def _container_logs(request: web.Request) -> web.StreamResponse:
    resolver: Resolver = request.app["resolver"]
    namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
    try:
        query = parse_query(dict(request.query))
    except ValueError as e:
        raise web.HTTPBadRequest(text=str(e)) from e
    source = resolver(namespace, pod, container, query.previous)
    if source is not None and source.waiting and not source.path.exists():
        raise web.HTTPBadRequest(text=f'container "{container}" in pod "{pod}" is waiting to start: '
                                      f"{source.waiting}")
    if source is None or not source.path.exists():
        what = "previous terminated container" if query.previous else "container"
        raise web.HTTPNotFound(text=f'{what} "{container}" in pod "{pod}" not found')
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    budget = query.limit_bytes

    async def send(chunk: bytes) -> bool:
        """Write within limitBytes; False once the budget is spent."""
        nonlocal budget
        if budget is not None:
            chunk = chunk[:budget]
            budget -= len(chunk)
        await response.write(chunk)
        return budget != 0

    with source.path.open("rb") as log:
        records = log.readlines()
        pending = b""
        if records and not records[-1].endswith(b"\n"):
            pending = records.pop()
        now = datetime.datetime.now(datetime.UTC)
        for rendered in select(records, query, now=now):
            if not await send(rendered):
                return response
        ended = False
        while query.follow:
            line = pending + log.readline()
            if line.endswith(b"\n"):
                pending = b""
                if not await send(render(line, timestamps=query.timestamps)):
                    break
                continue
            pending = line
            if ended:
                break
            ended = not source.active()  # if so, one more pass reads what it wrote before it ended
            if not ended:
                await asyncio.sleep(0.2)
    return response


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def server_ssl(*, cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve(*, host: str, port: int, ssl_context: ssl.SSLContext, resolver: Resolver) -> web.AppRunner:
    app = web.Application()
    app["resolver"] = resolver
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", _container_logs)
    app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
