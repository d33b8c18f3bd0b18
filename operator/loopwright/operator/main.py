"""The operator process: ``loopwright-operator`` (the container entry point) or, for development,
``kopf run -m loopwright.operator.main``.

Importing this module registers the handlers of all five kinds. The start-up
handler validates the configuration first, so a bad setting stops the operator
with a message naming it, before any object is touched.
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

import kopf

from loopwright.api.labels import DEPLOYMENT_LABEL, MANAGED_BY
from loopwright.operator import config, controllers, metrics, telemetry
from loopwright.operator.runtime.controller import MANAGER

__all__ = ["configure_kopf", "controllers", "main", "telemetry"]

_PREFIX = "kopf.loopwright.dev"
_log = logging.getLogger(__name__)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base (the last handled spec) serves create/update/field handlers; the operator has
    none (its handlers only watch and enqueue), so none is built or kept. Building it deep-copies
    every object on every watch event: at a thousand new pipelines, seconds of CPU."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf settings that Loopwright relies on (see shared notes on kopf)."""
    # Handler progress (none is kept: no create/update handlers) in annotations of our own prefix:
    # the status schema prunes unknown fields, so kopf's status.kopf would be dropped silently.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = "loopwright.dev/finalizer"
    # kopf waits this long for its own PATCH to come back before the next event;
    # the default 5 s dominates the create-to-Job latency.
    settings.persistence.consistency_timeout = 1.0
    # Events are posted by the runtime's recorder only (aggregated); handlers only enqueue keys.
    settings.posting.enabled = False
    # Watches are re-established regularly, and a silent stream is restarted (frozen watches).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.inactivity_timeout = 120
    settings.networking.request_timeout = 60
    # A watch or request the API server refused is tried again at most 5 s apart, for about ten
    # minutes: after an outage the watches resume within seconds (kopf's default steps up to 21 s
    # and gives up after 54 s, so a 60 s outage left Job events unseen for most of a minute).
    settings.networking.error_backoffs = (1, 1, 2, 3, *(5,) * 120)
    # Jobs are watched only where they carry our label, filtered by the API server (a labelSelector
    # on the list and watch requests): the handlers' labels= filters are applied after a
    # cluster-wide stream of every Job has reached the operator.
    managed = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    settings.watching.label_selectors["batch", "jobs"] = managed
    # The predictor workloads and Services likewise: the API server streams just those (a label
    # selector), not every Deployment and Service in the cluster.
    for resource in (("apps", "v1", "deployments"), ("", "v1", "services")):
        settings.watching.label_selectors[resource] = DEPLOYMENT_LABEL
    # Only the Dataset index is a sync handler: the reconciles run on the runtime's queues.
    settings.execution.max_workers = 2


def _tune_gc() -> None:
    """Fewer and shorter stop-the-world garbage collections when many objects arrive at once.

    Measured with 1,000 new pipelines (tests/bench/bench_operator.py): with the default
    thresholds the collector stopped every thread for 2.4 s in all, 9 full passes of up to
    0.23 s each. What start-up allocated (client models, kopf, pydantic schemas) lives for
    good and is frozen out of every later pass; young objects are collected less often:
    0.9-1.0 s in all, 2 full passes, for a few MB more resident memory at the peak.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


@kopf.on.login(id="loopwright.login")
async def login(*, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """kopf's credentials are the runtime client's too: one login, one identity (async: on the loop
    that the client waits on)."""
    return MANAGER.credentials.login(settings)


@kopf.on.startup(id="loopwright.startup")
async def startup(*, settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        logger.error("%s", exc)
        raise kopf.PermanentError(str(exc)) from exc
    configure_kopf(settings)
    _tune_gc()
    memo.config = cfg
    memo.http = await metrics.serve(port=cfg.metrics_port)
    await MANAGER.start(cfg)
    logger.info("loopwright operator: %s; /metrics and /healthz on port %d",
                "all namespaces" if cfg.clusterwide else "namespaces " + ",".join(cfg.namespaces),
                cfg.metrics_port)


@kopf.on.cleanup(id="loopwright.cleanup")
async def cleanup(*, memo: Any, **_: Any) -> None:
    await MANAGER.stop()
    http = getattr(memo, "http", None)
    if http is not None:
        await http.cleanup()


def main() -> int:
    """Container entry point: the namespaces to watch come from LOOPWRIGHT_NAMESPACES."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        print(f"loopwright: {exc}", file=sys.stderr)
        return 2
    kopf.run(standalone=True, clusterwide=cfg.clusterwide, namespaces=cfg.namespaces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
