"""The operator's Prometheus metrics and the HTTP server for /metrics and /healthz.

A registry of our own (with the process collector) keeps the output to what we
export, and lets tests read values without global state from other modules.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

RECONCILES = Counter(
    "loopwright_operator_reconciles_total", "Reconciles run, by kind and handler.",
    ["kind", "handler"], registry=REGISTRY)
ERRORS = Counter(
    "loopwright_operator_reconcile_errors_total", "Reconciles that raised, by kind and handler.",
    ["kind", "handler"], registry=REGISTRY)
DURATION = Histogram(
    "loopwright_operator_reconcile_duration_seconds", "Wall time of one reconcile, by kind.",
    ["kind"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


@contextmanager
def reconcile(*, kind: str, handler: str) -> Iterator[None]:
    """Count and time one reconcile; an exception is counted as an error and re-raised."""
    start = time.perf_counter()
    RECONCILES.labels(kind=kind, handler=handler).inc()
    try:
        yield
    except BaseException:
        ERRORS.labels(kind=kind, handler=handler).inc()
        raise
    finally:
        DURATION.labels(kind=kind).observe(time.perf_counter() - start)


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(_: web.Request) -> web.Response:
    # Answering at all proves the event loop is not blocked, which is what liveness is about.
    return web.Response(text="ok\n")


def app() -> web.Application:
    application = web.Application()
    application.router.add_get("/metrics", _metrics)
    application.router.add_get("/healthz", _healthz)
    return application


async def serve(*, port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104 (a pod's probe port)
    """Start the HTTP server on the running loop; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
