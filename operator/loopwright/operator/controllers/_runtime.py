"""Cluster I/O shared by the Dataset, TrainingPipeline, ModelVersion and DriftPolicy controllers.

Their reconciles are level-based functions of (namespace, name) that may be entered from
several places: the object's own handlers, events of the Jobs it owns, events of a Dataset it
uses, and a clock for schedules and refresh intervals. Hence:

* one lock per object, so two entries never interleave their read-decide-write steps;
* status writes guarded by ``resourceVersion``: a decision taken on a stale read fails with 409
  and is taken again on a fresh one, which is what makes "record the run, then create its Job"
  safe;
* Events posted through the API directly, which works from any thread (kopf's posting needs
  its own context).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any

import kubernetes

from loopwright.api.kinds import Kind
from loopwright.operator import config, kube
from loopwright.operator.builders.jobs import JobSettings
from loopwright.operator.controllers._common import condition_changed, now, stamp

_log = logging.getLogger(__name__)
__all__ = ["condition_changed", "now", "stamp"]

_locks: dict[Hashable, threading.Lock] = {}
_locks_guard = threading.Lock()

Obj = dict[str, Any]


class ConflictError(Exception):
    """The object changed since it was read: read again and decide again."""


@functools.cache
def settings() -> config.Config:
    """The operator's configuration (validated at start-up by ``loopwright.operator.main``)."""
    return config.load()


def job_settings(*, training: bool = False) -> JobSettings:
    """Settings of the Jobs; only training Jobs honour LOOPWRIGHT_SUSPEND_JOBS."""
    return JobSettings.of(settings(), training=training)


@contextlib.contextmanager
def hold(key: Hashable) -> Iterator[None]:
    """Serialise reconciles of one object (threads of kopf's executor, the clock, Job events)."""
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield


def forget(key: Hashable) -> None:
    """Drop the lock of a deleted object (a later object of the same name gets a new one)."""
    with _locks_guard:
        _locks.pop(key, None)




def get(kind: Kind, *, namespace: str, name: str) -> Obj | None:
    try:
        return kube.get_object(kind, namespace=namespace, name=name)
    except kubernetes.client.ApiException as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return None
        raise


def patch_status(kind: Kind, obj: Mapping[str, Any], status: Mapping[str, Any]) -> Obj:
    """Merge-patch the status, only if the object is still at the version the decision was made on."""
    meta = obj["metadata"]
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": dict(status)}
    try:
        result: Obj = kube.custom_objects().patch_namespaced_custom_object_status(
            kind.group, kind.version, meta["namespace"], kind.plural, meta["name"], body)
    except kubernetes.client.ApiException as exc:
        if exc.status == HTTPStatus.CONFLICT:
            raise ConflictError(f"{kind.kind} {meta['namespace']}/{meta['name']} changed") from exc
        raise
    return result


def retry_on_conflict(fn: Callable[[], None], *, attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            fn()
            return
        except ConflictError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _raw(response: Any) -> Obj:
    """The JSON of a response read with ``_preload_content=False``.

    Turning a Job into the client's model objects and back costs more CPU than the API
    call itself; at a thousand pipelines that is the operator's bottleneck.
    """
    result: Obj = json.loads(response.data)
    return result


def read_job(*, namespace: str, name: str) -> Obj | None:
    try:
        return _raw(kube.batch().read_namespaced_job(name, namespace, _preload_content=False))
    except kubernetes.client.ApiException as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return None
        raise


def read_secret(*, namespace: str, name: str) -> Obj | None:
    """A Secret by name (the only way the operator reads Secrets: RBAC grants ``get``, never ``list``).

    The caller is responsible for keeping its values out of logs, status and Events.
    """
    try:
        return _raw(kube.core().read_namespaced_secret(name, namespace, _preload_content=False))
    except kubernetes.client.ApiException as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return None
        raise


def create_job(manifest: Mapping[str, Any]) -> tuple[Obj, bool]:
    """Create the Job, or adopt the one an earlier attempt (maybe before a restart) created."""
    meta = manifest["metadata"]
    response, created = kube.create_or_adopt(
        create=lambda: kube.batch().create_namespaced_job(meta["namespace"], dict(manifest),
                                                          _preload_content=False),
        read=lambda: kube.batch().read_namespaced_job(meta["name"], meta["namespace"],
                                                      _preload_content=False))
    return _raw(response), created


def delete_job(*, namespace: str, name: str) -> None:
    """Delete a Job and, in the background, its pods; a Job already gone is fine."""
    try:
        kube.batch().delete_namespaced_job(name, namespace, propagation_policy="Background")
    except kubernetes.client.ApiException as exc:
        if exc.status != HTTPStatus.NOT_FOUND:
            raise


def job_pods(job: Mapping[str, Any]) -> list[Obj]:
    """The pods of a Job (to learn how its containers ended)."""
    meta = job["metadata"]
    selector = f"batch.kubernetes.io/controller-uid={meta['uid']}"
    pods = kube.core().list_namespaced_pod(meta["namespace"], label_selector=selector, _preload_content=False)
    items: list[Obj] = _raw(pods).get("items", [])
    return items


def post_event(obj: Mapping[str, Any], *, type_: str, reason: str, message: str) -> None:
    """A Kubernetes Event on ``obj`` (what ``kubectl describe`` shows); failures are only logged."""
    meta = obj["metadata"]
    moment = stamp(now())
    body = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                           "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
        "type": type_, "reason": reason, "message": message[:1024],
        "firstTimestamp": moment, "lastTimestamp": moment, "count": 1,
        "source": {"component": "loopwright"}, "reportingComponent": "loopwright.dev/operator",
        "reportingInstance": "loopwright",
    }
    try:
        kube.core().create_namespaced_event(meta["namespace"], body, _preload_content=False)
    except kubernetes.client.ApiException as exc:
        _log.warning("cannot post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc.reason)




class Clock:
    """Fires reconciles when a time kept in a kopf index comes due (schedules, refresh intervals).

    One task for all objects instead of a kopf timer per object: timers add finalizers, which
    would block deleting objects (and namespaces) while the operator is down, and cost a
    PATCH per object before its first reconcile.
    """

    def __init__(self, *, period: float, refire_after: float = 300.0) -> None:
        self.period = period
        self.refire_after = refire_after
        self._fired: dict[Hashable, tuple[datetime, float]] = {}
        self._later: dict[Hashable, float] = {}

    def forget(self, key: Hashable) -> None:
        self._fired.pop(key, None)
        self._later.pop(key, None)

    def later(self, key: Hashable, *, delay: float) -> None:
        """Fire ``key`` again after ``delay`` seconds (a retry after a failed reconcile)."""
        self._later[key] = time.monotonic() + delay

    async def run(
        self,
        index: Mapping[Hashable, Any],
        fire: Callable[[Hashable], Awaitable[None]],
        *,
        concurrency: int = 4,
    ) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(key: Hashable) -> None:
            async with gate:
                try:
                    await fire(key)
                except Exception:
                    _log.exception("clock-driven reconcile of %s failed", key)

        while True:
            await asyncio.sleep(self.period)
            due = self.due(index, moment=now(), monotonic=time.monotonic())
            if due:
                await asyncio.gather(*(one(key) for key in due))

    def due(self, index: Mapping[Hashable, Any], *, moment: datetime, monotonic: float) -> list[Hashable]:
        """Keys with a time that has come and was not fired already (or not recently).

        An index value is one time or several (a schedule slot, a cooldown's end ...): the
        latest one that has passed counts, so a past time never hides a later one.
        """
        keys = [key for key, at in list(self._later.items()) if at <= monotonic]
        for key in keys:
            self._later.pop(key, None)
        for key, store in list(index.items()):
            value = next(iter(store), None)
            times = [value] if isinstance(value, datetime) else list(value or ())
            passed = [t for t in times if t is not None and t <= moment]
            if not passed:
                continue
            when = max(passed)
            fired = self._fired.get(key)
            if fired is not None and fired[0] >= when and monotonic - fired[1] < self.refire_after:
                continue
            self._fired[key] = (when, monotonic)
            if key not in keys:
                keys.append(key)
        return keys
