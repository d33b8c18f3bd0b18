"""A keyed work queue, as controller-runtime's: one entry per object, one reconcile per key at a time.

Watch events, timers and other controllers ``add`` keys; a bounded number of workers take them
and run the controller's reconcile. A key added while it waits is coalesced with the waiting
entry; added while its reconcile runs, it is marked dirty and runs once more when that ends (the
reconcile may have read the object before the change). A reconcile's :class:`Result` says when to
look again (``requeue_after``); one that raises is retried with a per-key exponential backoff.
No finalizers and no per-object tasks: deleting an object only drops its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
_log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_MAX = 60.0
UNREACHABLE_BACKOFF_MAX = 5.0
"""The cap when the API server or S3 could not be reached: a refused connection costs nothing, and
the objects converge within seconds of its return instead of waiting out a minute of backoff (a
run whose Job completed just after an API outage waited 60 s for S3's DNS name to resolve again)."""


@dataclass(frozen=True)
class Result:
    """What a reconcile decided about the next one: ``requeue_after`` seconds, or only on an event."""

    requeue_after: float | None = None


class WorkQueue(Generic[K]):
    """Keys to reconcile, each at most once at a time, by at most ``workers`` reconciles at once."""

    def __init__(self, reconcile: Callable[[K], Awaitable[Result]], *, name: str, workers: int = 8,
                 unreachable: tuple[type[BaseException], ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._unreachable = unreachable
        self._reconcile = reconcile
        self._workers = workers
        self._clock = clock
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._running: set[K] = set()
        self._dirty: set[K] = set()
        self._later: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self._queued) + len(self._due)

    def add(self, key: K, *, delay: float = 0.0) -> None:
        """Reconcile ``key`` now (or in ``delay`` seconds; an earlier time already set wins)."""
        if delay > 0:
            when = self._clock() + delay
            if key in self._queued or self._due.get(key, float("inf")) <= when:
                return
            self._due[key] = when
            heapq.heappush(self._later, (when, next(self._seq), key))
            self._wake.set()
            return
        self._due.pop(key, None)
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def forget(self, key: K) -> None:
        """The object is gone: drop its timer and its backoff (an entry already waiting still runs,
        and finds nothing)."""
        self._due.pop(key, None)
        self._failures.pop(key, None)
        self._dirty.discard(key)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker(), name=f"{self.name} worker {i}")
                       for i in range(self._workers)]
        self._tasks.append(loop.create_task(self._timer(), name=f"{self.name} timer"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def drain(self) -> None:
        """Run until nothing is queued, running or due now (tests)."""
        while self._queued or self._running or self._dirty:
            key = self._ready.get_nowait() if not self._ready.empty() else None
            if key is None:
                await asyncio.sleep(0)
                continue
            await self._one(key)

    def due_now(self) -> None:
        """Move every delayed key whose time has come into the queue."""
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            when, _, key = heapq.heappop(self._later)
            if self._due.get(key) == when:
                del self._due[key]
                self.add(key)

    def next_due(self) -> float | None:
        """Seconds until the earliest delayed key (None: none)."""
        while self._later and self._due.get(self._later[0][2]) != self._later[0][0]:
            heapq.heappop(self._later)  # superseded or forgotten
        return max(0.0, self._later[0][0] - self._clock()) if self._later else None

    async def _timer(self) -> None:
        while True:
            self.due_now()
            wait = self.next_due()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=60.0 if wait is None else max(wait, 0.01))

    async def _worker(self) -> None:
        while True:
            key = await self._ready.get()
            await self._one(key)

    async def _one(self, key: K) -> None:
        self._queued.discard(key)
        self._running.add(key)
        result: Result | None = None
        try:
            result = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            unreachable = isinstance(exc, self._unreachable)
            cap = UNREACHABLE_BACKOFF_MAX if unreachable else BACKOFF_MAX
            delay = min(cap, BACKOFF_BASE * 2 ** (failures - 1))
            if unreachable:
                _log.warning("%s: reconcile of %s: unreachable (%s); again in %.1fs",
                             self.name, key, exc, delay)
            else:
                _log.exception("%s: reconcile of %s failed (%d in a row); again in %.1fs",
                               self.name, key, failures, delay)
            result = Result(requeue_after=delay)
        else:
            self._failures.pop(key, None)
        finally:
            self._running.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
        elif result is not None and result.requeue_after is not None:
            self.add(key, delay=result.requeue_after)
