"""Laying pod template overlays over the pods the operator builds.

Every pod Loopwright creates (predictor, trainer, profiler, verifier) gets, in this order:

1. the built-in requests and limits of its role (:data:`DEFAULT_RESOURCES`), so no pod is
   BestEffort and every pod is admitted under a compute ResourceQuota;
2. the operator-wide defaults (``LOOPWRIGHT_POD_DEFAULTS`` for every pod, then
   ``LOOPWRIGHT_DEFAULT_RESOURCES`` for the role);
3. the resources field the kind already had (``spec.resources``, ``spec.job.resources``);
4. the object's own ``spec.podTemplate``.

Maps (nodeSelector, labels, annotations, requests, limits) merge key by key; every other field
of a later layer replaces the earlier one. The operator's own labels always win over extra ones,
and the restricted security settings are written last, whatever the layers held: an overlay
can move a pod, name its identity and size it, never make it more privileged.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import StrEnum

from loopwright.api.common import ResourceRequirements
from loopwright.api.podtemplate import PodTemplate
from loopwright.operator.builders.common import (
    Manifest,
    restricted_container_security,
    restricted_pod_security,
)


class Role(StrEnum):
    """What a pod does; each role has its own default resources."""

    PREDICTOR = "predictor"
    TRAINER = "trainer"
    PROFILER = "profiler"
    VERIFIER = "verifier"


DEFAULT_RESOURCES: Mapping[Role, ResourceRequirements] = {
    Role.PREDICTOR: ResourceRequirements(requests={"cpu": "100m", "memory": "128Mi"},
                                         limits={"cpu": "2", "memory": "1Gi"}),
    Role.TRAINER: ResourceRequirements(requests={"cpu": "250m", "memory": "512Mi"},
                                       limits={"cpu": "2", "memory": "4Gi"}),
    Role.PROFILER: ResourceRequirements(requests={"cpu": "100m", "memory": "256Mi"},
                                        limits={"cpu": "1", "memory": "2Gi"}),
    Role.VERIFIER: ResourceRequirements(requests={"cpu": "100m", "memory": "256Mi"},
                                        limits={"cpu": "1", "memory": "2Gi"}),
}

_SUFFIXES: dict[str, Decimal | int] = {
    "": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value: int | str) -> Decimal:
    """The number a Kubernetes quantity stands for (``500m`` → 0.5, ``1Gi`` → 1073741824)."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


def merged_resources(layers: Sequence[ResourceRequirements | None]) -> Manifest:
    """Requests and limits merged key by key, later layers winning.

    A request above the limit an earlier layer set (a user asking 8Gi under a 1Gi default limit)
    raises that limit to the request, and a limit below an earlier request lowers that request:
    the later layer said what it wants, and a pod whose requests exceed its limits would be
    refused by the API server.
    """
    requests: dict[str, int | str] = {}
    limits: dict[str, int | str] = {}
    for layer in layers:
        if layer is None:
            continue
        layer_requests, layer_limits = layer.requests or {}, layer.limits or {}
        requests.update(layer_requests)
        limits.update(layer_limits)
        for key in set(requests) & set(limits):
            if quantity(requests[key]) > quantity(limits[key]):
                if key in layer_requests and key not in layer_limits:
                    limits[key] = requests[key]
                elif key in layer_limits and key not in layer_requests:
                    requests[key] = limits[key]
    out: Manifest = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def apply(
    template: Manifest,
    *,
    role: Role,
    container: str,
    selector: Mapping[str, str],
    defaults: PodTemplate | None = None,
    default_resources: ResourceRequirements | None = None,
    resources: ResourceRequirements | None = None,
    overlay: PodTemplate | None = None,
) -> Manifest:
    """``template`` (a pod template: metadata and spec) with the layers laid over it; a new dict.

    ``selector`` fills the labelSelector of a topology spread constraint that has none (the pods
    of this workload).
    """
    out = copy.deepcopy(template)
    meta = out.setdefault("metadata", {})
    spec = out["spec"]
    own_labels = dict(meta.get("labels") or {})
    own_annotations = dict(meta.get("annotations") or {})
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    layers = [layer for layer in (defaults, overlay) if layer is not None]
    for layer in layers:
        labels.update(layer.labels or {})
        annotations.update(layer.annotations or {})
        if layer.node_selector:
            spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **layer.node_selector}
        if layer.tolerations is not None:
            spec["tolerations"] = [t.to_wire() for t in layer.tolerations]
        if layer.affinity is not None:
            spec["affinity"] = layer.affinity.to_wire()
        if layer.topology_spread_constraints is not None:
            spec["topologySpreadConstraints"] = [
                {"labelSelector": {"matchLabels": dict(selector)}, **c.to_wire()}
                for c in layer.topology_spread_constraints]
        if layer.service_account_name is not None:
            spec["serviceAccountName"] = layer.service_account_name
        if layer.image_pull_secrets is not None:
            spec["imagePullSecrets"] = [s.to_wire() for s in layer.image_pull_secrets]
        if layer.priority_class_name is not None:
            spec["priorityClassName"] = layer.priority_class_name
    meta["labels"] = {**labels, **own_labels}
    if annotations or own_annotations:
        meta["annotations"] = {**annotations, **own_annotations}
    sized = merged_resources([DEFAULT_RESOURCES[role], defaults.resources if defaults else None,
                              default_resources, resources, overlay.resources if overlay else None])
    # The guard: whatever a layer held, the pod is as unprivileged as the builders made it.
    spec["securityContext"] = restricted_pod_security()
    spec["automountServiceAccountToken"] = False
    for key in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        spec.pop(key, None)
    for c in spec["containers"]:
        c["securityContext"] = restricted_container_security()
        if c["name"] == container:
            c["resources"] = sized
    return out
