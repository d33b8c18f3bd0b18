"""Which watch events of a controller's own kind are worth a reconcile (controller-runtime's
predicates): an object seen for the first time (the initial listing after a start included), a
new generation (spec), changed annotations or labels (requests such as train-request), a
deletion starting. The status writes of the controller itself change none of these, so they
cost no reconcile. What was seen is kept in a bounded cache: an object forgotten is merely seen
anew, one extra reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopwright.operator.runtime.cache import BoundedCache

IGNORED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "kopf.loopwright.dev/")
SIZE = 100_000


def _fingerprint(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(IGNORED_ANNOTATIONS)}
    return (meta.get("uid"), meta.get("generation"), meta.get("deletionTimestamp") is not None,
            tuple(sorted(annotations.items())), tuple(sorted((meta.get("labels") or {}).items())))


class Changes:
    def __init__(self, size: int = SIZE) -> None:
        self._seen: BoundedCache[tuple[str, str], tuple[Any, ...]] = BoundedCache(size)

    def worth(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """Whether this event may change what the reconcile decides (DELETED: never, it forgets)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self._seen.pop(key)
            return False
        fingerprint = _fingerprint(meta)
        if self._seen.get(key) == fingerprint:
            return False
        self._seen.put(key, fingerprint)
        return True
