"""``loopwright-predictor``: serve one model until SIGTERM, then drain and exit 0.

Shutdown order matters behind a Kubernetes Service: endpoints are removed
asynchronously after the pod is marked terminating, so for a short while new
requests still arrive, and kube-proxy keeps sending requests to terminating pods that
are still ready while no other pod is. On the first SIGTERM (or SIGINT) the predictor
therefore keeps accepting and serving (and ready) for ``LOOPWRIGHT_DRAIN_SECONDS``;
only then does uvicorn stop listening and wait for in-flight requests. A second
signal skips the drain. Exit status: 0 after a drain, 1 if the model could not
be loaded (the reason is also the container's termination message, which the operator shows
in the Deployment's status), 2 for a configuration error.

HTTP listens on ``PORT``, gRPC on ``GRPC_PORT`` (:mod:`.grpc_server`, imported only when on).
Nothing here imports scikit-learn, SciPy or pandas: a compiled model is served without them,
and a skops model imports them while it loads.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from types import FrameType

import uvicorn

from loopwright import termination
from loopwright.serving import model
from loopwright.serving.app import PredictorApp
from loopwright.serving.settings import Settings, SettingsError

logger = logging.getLogger("loopwright.serving")


class _DrainingServer(uvicorn.Server):
    """uvicorn with a drain period between the signal and the stop of the listener."""

    def __init__(self, config: uvicorn.Config, *, app: PredictorApp, drain_seconds: float) -> None:
        super().__init__(config)
        self._plane = app.plane
        self._drain_seconds = drain_seconds
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in uvicorn's captured signals on purpose: uvicorn would re-raise them
        # after shutdown, and a process killed by its own SIGTERM does not exit 0.
        if self._drain_until is None and sig in (signal.SIGTERM, signal.SIGINT):
            self._plane.begin_drain()
            self._drain_until = time.monotonic() + self._drain_seconds
        else:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        logger.error("%s", exc)
        sys.exit(2)

    def load() -> model.ServedModel:
        return model.load(
            model_uri=settings.model_uri,
            model_sha256=settings.model_sha256,
            profile_uri=settings.profile_uri,
            profile_sha256=settings.profile_sha256,
            compiled_uri=settings.compiled_uri,
            compiled_sha256=settings.compiled_sha256,
            trusted_types=settings.trusted_types,
        )

    app = PredictorApp(settings=settings, loader=load)
    if settings.grpc_port:
        from loopwright.serving.grpc_server import GrpcServer  # noqa: PLC0415 - only when gRPC is on

        app.services.append(GrpcServer(app.plane, host=settings.host, port=settings.grpc_port))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        date_header=False,
        # Nothing here reads the client address, so the X-Forwarded-* middleware is pure cost.
        proxy_headers=False,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
    server = _DrainingServer(config, app=app, drain_seconds=settings.drain_seconds)

    def fatal() -> None:
        server.should_exit = True

    app.plane.on_fatal = fatal
    server.run()
    if app.plane.load_error is not None:
        termination.write(f"cannot serve the model: {app.plane.load_error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
