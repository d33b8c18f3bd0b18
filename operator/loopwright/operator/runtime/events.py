"""The one event recorder: repeats aggregate into one Event, as client-go's EventCorrelator does.

The same type, reason and message on the same object within :data:`WINDOW` seconds is one Event
whose ``count`` and ``lastTimestamp`` grow (a PATCH), not a new Event each time. What was posted is
remembered in a bounded LRU; an Event that expired meanwhile (404 on the PATCH) is posted anew.
Posting never fails a reconcile: refusals are logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from loopwright.operator.runtime.cache import BoundedCache
from loopwright.operator.runtime.client import EVENTS, ApiError, Client

_log = logging.getLogger(__name__)
COMPONENT = "loopwright"
WINDOW = 600.0
MAX_MESSAGE = 1024

Key = tuple[str, str, str, str, str, str]


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class EventRecorder:
    def __init__(self, client: Client, *, size: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._seen: BoundedCache[Key, tuple[str, int, float, str]] = BoundedCache(size)
        """key -> (Event name, count, first seen on the monotonic clock, firstTimestamp)."""
        self._clock = clock

    async def record(self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on ``obj`` (what ``kubectl describe`` shows)."""
        meta = obj["metadata"]
        namespace, message = meta["namespace"], message[:MAX_MESSAGE]
        key = (namespace, str(meta.get("uid") or meta["name"]), str(obj.get("kind")), type_, reason, message)
        now, moment = self._clock(), stamp(datetime.now(UTC))
        try:
            seen = self._seen.get(key)
            if seen is not None and now - seen[2] < WINDOW:
                name, count, first, first_stamp = seen
                try:
                    await self.client.patch(EVENTS, namespace, name,
                                            {"count": count + 1, "lastTimestamp": moment})
                    self._seen.put(key, (name, count + 1, first, first_stamp))
                    return
                except ApiError as exc:
                    if exc.status != HTTPStatus.NOT_FOUND:
                        raise
            body = {
                "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
                "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                                   "name": meta["name"], "namespace": namespace, "uid": meta.get("uid")},
                "type": type_, "reason": reason, "message": message,
                "firstTimestamp": moment, "lastTimestamp": moment, "count": 1,
                "source": {"component": COMPONENT}, "reportingComponent": "loopwright.dev/operator",
                "reportingInstance": COMPONENT,
            }
            created = await self.client.create(EVENTS, namespace, body)
            self._seen.put(key, (created["metadata"]["name"], 1, now, moment))
        except (ApiError, OSError, TimeoutError) as exc:
            _log.warning("cannot post event %s on %s/%s: %s", reason, namespace, meta["name"], exc)
