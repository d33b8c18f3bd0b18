"""Controllers on the runtime: watch → observe → plan → apply, returning when to look again.

A controller is an object with a ``kind``, a number of ``workers`` and ``reconcile(key)``. Its
kopf handlers (``@kopf.on.event`` on its own kind and on whatever else concerns it) only call
:meth:`Manager.enqueue`; the :class:`Manager` gives each controller one :class:`WorkQueue` and the
shared :class:`Context`: the API client, the status writer, the event recorder, the settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import kopf

from loopwright import storage
from loopwright.operator import metrics
from loopwright.operator.config import Config
from loopwright.operator.runtime.client import UNREACHABLE, Client, Credentials
from loopwright.operator.runtime.events import EventRecorder
from loopwright.operator.runtime.queue import Result, WorkQueue
from loopwright.operator.runtime.status import StatusWriter
from loopwright.operator.runtime.watch import Changes

Key = tuple[str, str]
"""(namespace, name) of the object a controller reconciles."""
OUTAGES: tuple[type[BaseException], ...] = (*UNREACHABLE, storage.EndpointUnreachableError)
"""Failures that are an outage of the API server or of S3, retried at most a few seconds apart."""


@dataclass(frozen=True, kw_only=True)
class Context:
    """What every reconcile works with."""

    api: Client
    status: StatusWriter
    events: EventRecorder
    config: Config

    @classmethod
    def of(cls, api: Client, cfg: Config) -> Context:
        return cls(api=api, status=StatusWriter(api), events=EventRecorder(api), config=cfg)


class Controller(Protocol):
    kind: str
    """Names the queue and the metrics."""
    workers: int

    async def reconcile(self, ctx: Context, key: Key) -> Result: ...


class Manager:
    """The controllers of one operator process and their queues."""

    def __init__(self) -> None:
        self.credentials = Credentials()
        self.controllers: dict[str, Controller] = {}
        self.queues: dict[str, WorkQueue[Key]] = {}
        self.context: Context | None = None

    def register(self, controller: Controller) -> None:
        async def reconcile(key: Key) -> Result:
            assert self.context is not None, "the manager runs reconciles only once started"
            with metrics.reconcile(kind=controller.kind, handler="reconcile"):
                return await controller.reconcile(self.context, key)

        self.controllers[controller.kind] = controller
        self.queues[controller.kind] = WorkQueue(reconcile, name=controller.kind, workers=controller.workers,
                                                   unreachable=OUTAGES)

    def enqueue(self, kind: str, key: Hashable, *, delay: float = 0.0) -> None:
        self.queues[kind].add(_key(key), delay=delay)

    def forget(self, kind: str, key: Hashable) -> None:
        self.queues[kind].forget(_key(key))

    def watcher(self, kind: str) -> Callable[..., Awaitable[None]]:
        """The kopf event handler of a controller's own kind: enqueue what is worth a reconcile
        (:class:`~loopwright.operator.runtime.watch.Changes`), forget what was deleted."""
        changes = Changes()

        async def watch(*, type: str | None, body: kopf.Body, namespace: str | None, name: str,
                        **_: Any) -> None:
            if changes.worth(type, body):
                self.enqueue(kind, (namespace, name))
            elif type == "DELETED":
                self.forget(kind, (namespace, name))

        return watch

    async def start(self, cfg: Config) -> Context:
        self.context = Context.of(Client(self.credentials), cfg)
        for queue in self.queues.values():
            queue.start()
        return self.context

    async def stop(self) -> None:
        for queue in self.queues.values():
            await queue.stop()
        if self.context is not None:
            await self.context.api.close()


def _key(key: Any) -> Key:
    namespace, name = key
    return (str(namespace), str(name))


MANAGER = Manager()
"""The operator's runtime: controllers register at import, :mod:`loopwright.operator.main` starts it."""
