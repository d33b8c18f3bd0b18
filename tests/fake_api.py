"""The shared fake API for controller tests: :class:`loopwright.operator.runtime.client.Client`
served from memory (CloudNativePG's fake client, for us).

Every verb of the real client goes through the same paths and bodies; the fake keeps objects by
resource, namespace and name and answers as the API server does where controllers depend on it:
``resourceVersion`` bumped on every write and checked when a patch carries one (409), 409 on
creating a name that exists, 404 on a missing object, ``generation`` bumped on spec changes only,
the status subresource changing only the status, label selectors (``k=v``, ``k``), server-side
apply creating or merging. ``calls`` records each request as ``"VERB plural/name"``; ``refuse``
makes the next matching requests fail with a given error.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from loopwright.operator import config
from loopwright.operator.runtime.client import ApiError, Client, Credentials, Obj, Resource
from loopwright.operator.runtime.controller import Context

NS = "ns"
CONFIG = config.Config(namespaces=(NS,), s3_endpoint=None, artifact_bucket="bucket", s3_secret=None,
                       trainer_image="loopwright/ml:test", predictor_image="loopwright/ml:test",
                       metrics_port=8000, suspend_jobs=True)


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _selected(obj: Mapping[str, Any], selector: str | None) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, eq, value = term.partition("=")
        if (key not in labels) if not eq else labels.get(key) != value:
            return False
    return True


class FakeApi(Client):
    def __init__(self) -> None:
        super().__init__(Credentials())
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        """(resource path prefix, namespace, name) -> object."""
        self.calls: list[str] = []
        self.applied: list[tuple[str, dict[str, Any]]] = []
        """(field manager, body) of each server-side apply, in order."""
        self.refusals: list[tuple[str, str, ApiError, int]] = []
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)

    # -- test helpers --------------------------------------------------------------------------------

    def add(self, res: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as if a user created it (defaults for what the server fills in)."""
        body = copy.deepcopy(dict(obj))
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", NS)
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._rv))
        body.update(apiVersion=res.api_version, kind=res.kind)
        self.objects[(_prefix(res), meta["namespace"], meta["name"])] = body
        return copy.deepcopy(body)

    def obj(self, res: Resource, name: str, namespace: str = NS) -> dict[str, Any] | None:
        found = self.objects.get((_prefix(res), namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def all(self, res: Resource, namespace: str = NS) -> dict[str, dict[str, Any]]:
        prefix = _prefix(res)
        return {n: o for (p, ns, n), o in self.objects.items() if p == prefix and ns == namespace}

    def refuse(self, method: str, plural: str, error: ApiError, *, times: int = 1_000_000) -> None:
        """The next ``times`` requests ``method`` on ``plural`` fail with ``error``."""
        self.refusals.append((method, plural, error, times))

    def context(self, cfg: config.Config = CONFIG) -> Context:
        return Context.of(self, cfg)

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    # -- the API -------------------------------------------------------------------------------------

    async def close(self) -> None:
        return None

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: Mapping[str, str] | None = None, content_type: str = "application/json") -> Obj:
        parts = urlsplit(path).path.strip("/").split("/")
        head = parts[:2] if parts[0] == "api" else parts[:3]
        rest = parts[len(head):]
        if rest[:1] != ["namespaces"]:
            return await self._discovery(path)
        namespace, plural = rest[1], rest[2]
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        verb = "APPLY" if content_type.startswith("application/apply-patch") else method
        self.calls.append(f"{verb} {plural}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else ""))
        for i, (m, p, error, times) in enumerate(self.refusals):
            if m == verb and p == plural:
                self.refusals[i] = (m, p, error, times - 1)
                if times <= 1:
                    del self.refusals[i]
                raise error
        prefix = "/".join([*head, plural])
        key = (prefix, namespace, name or "")
        handler = {"GET": self._get, "POST": self._create, "PATCH": self._patch, "APPLY": self._apply,
                   "DELETE": self._delete}[verb]
        wire = json.loads(json.dumps(body)) if body is not None else None  # what the real client sends
        return handler(key, body=wire, sub=sub, params=params or {}, plural=plural)

    async def _discovery(self, path: str) -> Obj:
        raise ApiError(404, "Not Found", f"the server could not find {path}")

    def _missing(self, key: tuple[str, str, str], plural: str) -> ApiError:
        return ApiError(404, "Not Found", f'{plural} "{key[2]}" not found')

    def _get(self, key: tuple[str, str, str], *, params: Mapping[str, str], plural: str, **_: Any) -> Obj:
        if key[2]:
            found = self.objects.get(key)
            if found is None:
                raise self._missing(key, plural)
            return copy.deepcopy(found)
        items = [copy.deepcopy(o) for (p, ns, _), o in self.objects.items()
                 if (p, ns) == key[:2] and _selected(o, params.get("labelSelector"))]
        return {"kind": "List", "metadata": {"resourceVersion": str(next(self._rv))}, "items": items}

    def _create(self, key: tuple[str, str, str], *, body: dict[str, Any], plural: str, **_: Any) -> Obj:
        meta = body.setdefault("metadata", {})
        if "name" not in meta:
            meta["name"] = meta.pop("generateName", "") + f"{next(self._uid):05d}"
        found = (key[0], key[1], meta["name"])
        if found in self.objects:
            raise ApiError(409, "Conflict", f'{plural} "{meta["name"]}" already exists')
        meta.update(namespace=key[1], uid=f"uid-{next(self._uid)}", generation=1,
                    resourceVersion=str(next(self._rv)))
        self.objects[found] = body
        return copy.deepcopy(body)

    def _patch(self, key: tuple[str, str, str], *, body: dict[str, Any], sub: str | None, plural: str,
               **_: Any) -> Obj:
        stored = self.objects.get(key)
        if stored is None:
            raise self._missing(key, plural)
        wanted = (body.get("metadata") or {}).pop("resourceVersion", None)
        if wanted is not None and wanted != stored["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{key[2]}": '
                                            "the object has been modified")
        if sub == "status":
            body = {"status": body.get("status") or {}}
        else:
            body.pop("status", None)
        before = json.dumps(stored.get("spec"), sort_keys=True)
        merge_patch(stored, body)
        if json.dumps(stored.get("spec"), sort_keys=True) != before:
            stored["metadata"]["generation"] += 1
        stored["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(stored)

    def _apply(self, key: tuple[str, str, str], *, body: dict[str, Any], plural: str,
               params: Mapping[str, str], **kw: Any) -> Obj:
        manager = params.get("fieldManager", "")
        self.applied.append((manager, copy.deepcopy(body)))
        if key not in self.objects:
            return self._create((key[0], key[1], ""), body=body, plural=plural)
        stored = self.objects[key]
        if manager != "loopwright":  # another manager's few fields join the operator's
            merge_patch(stored, {k: v for k, v in body.items() if k != "metadata"})
        else:
            stored.update({k: v for k, v in body.items() if k != "metadata"})
        merge_patch(stored["metadata"],
                    {k: v for k, v in body["metadata"].items() if k in ("labels", "annotations")})
        stored["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(stored)

    def _delete(self, key: tuple[str, str, str], *, plural: str, **_: Any) -> Obj:
        if self.objects.pop(key, None) is None:
            raise self._missing(key, plural)
        return {"kind": "Status", "status": "Success"}


def _prefix(res: Resource) -> str:
    head = ["api", res.version] if not res.group else ["apis", res.group, res.version]
    return "/".join([*head, res.plural])
