"""The loop's gauges on the operator's /metrics: each object's status, restated (core.telemetry).

One kopf event handler per kind keeps the samples of every object it sees (the watch streams
the operator runs anyway; no extra API call), and a collector renders them at scrape time. A
deleted object's samples go with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import kopf
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from loopwright.api.kinds import ALL_KINDS, ANALYSIS_TEMPLATE
from loopwright.core import telemetry
from loopwright.operator.metrics import REGISTRY

_Key = tuple[str, str, str]


class LoopCollector(Collector):
    """The samples of every object, by (kind, namespace, name)."""

    def __init__(self) -> None:
        self._objects: dict[_Key, list[telemetry.Sample]] = {}
        self._lock = threading.Lock()

    def observe(self, kind: str, obj: dict[str, Any], *, deleted: bool = False) -> None:
        meta = obj.get("metadata") or {}
        key = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            if deleted:
                self._objects.pop(key, None)
            else:
                self._objects[key] = telemetry.samples(kind, obj)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            every = [s for samples in self._objects.values() for s in samples]
        families: dict[str, tuple[GaugeMetricFamily, list[str]]] = {}
        for sample in every:
            if sample.name not in families:
                doc = telemetry.METRICS[sample.name.removeprefix(telemetry.PREFIX)]
                names = list(sample.labels)
                families[sample.name] = (GaugeMetricFamily(sample.name, doc, labels=names), names)
            family, names = families[sample.name]
            family.add_metric([sample.labels[k] for k in names], sample.value)
        yield from (family for family, _ in families.values())


COLLECTOR = LoopCollector()
REGISTRY.register(COLLECTOR)


def _register(kind: str, group: str, version: str, plural: str) -> None:
    @kopf.on.event(group, version, plural, id=f"telemetry.{plural}")  # type: ignore[arg-type]
    def observe(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        COLLECTOR.observe(kind, dict(body), deleted=event.get("type") == "DELETED")


for _kind in ALL_KINDS:
    if _kind is not ANALYSIS_TEMPLATE:
        _register(_kind.kind, _kind.group, _kind.version, _kind.plural)
