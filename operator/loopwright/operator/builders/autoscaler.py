"""The HorizontalPodAutoscaler of a Deployment's stable workload (``spec.autoscaling``), the
handover of ``spec.replicas`` from the operator to it, and the ``Autoscaling`` condition.

One autoscaling/v2 HPA per autoscaled workload, named like it (``<mld>-v<version>``), owned by
the Deployment and labelled like its other children, so a promotion moves it with the stable
version and turning autoscaling off prunes it.

Server-side apply and replicas: a field the operator applied once and then leaves out of its
manifest would be *removed* from the object, and apps/v1 defaults a missing ``spec.replicas`` to
1, scaling a busy version down to one pod. So before the first apply without replicas, the
field is handed over (the recipe of the Kubernetes documentation, "Transferring ownership"):
:data:`HANDOVER_MANAGER` applies the live value alone, becoming a co-owner; the operator's next
apply drops its own claim and the value stays, for the autoscaler to change from then on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopwright.api.common import ConditionStatus
from loopwright.api.deployment import REQUESTS_PER_SECOND_METRIC, Autoscaling
from loopwright.core.conditions import Verdict
from loopwright.operator.builders.common import Manifest, Owner
from loopwright.operator.builders.predictor import base_labels, child_metadata, workload_name

API_VERSION = "autoscaling/v2"
AUTOSCALING = "Autoscaling"
"""Condition: whether the autoscaler of the stable version can read its metrics and scale."""
HANDOVER_MANAGER = "loopwright-handover"
"""The field manager that keeps ``spec.replicas`` of a workload whose replicas move to an HPA."""
_BLOCKING = ("AbleToScale", "ScalingActive")
"""The HPA conditions that, False, mean it does not scale (with the reason why)."""


def autoscaler(*, owner: Owner, model: str, version: int, autoscaling: Autoscaling) -> Manifest:
    """The HPA sizing the workload of ``version`` between the bounds of ``spec.autoscaling``."""
    name = workload_name(owner.name, version)
    metrics: list[Manifest] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": autoscaling.target_cpu_utilization_percentage}}}]
    if autoscaling.target_requests_per_second is not None:
        metrics.append({"type": "Pods", "pods": {
            "metric": {"name": REQUESTS_PER_SECOND_METRIC},
            "target": {"type": "AverageValue", "averageValue": str(autoscaling.target_requests_per_second)}}})
    return {
        "apiVersion": API_VERSION,
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(name=name, owner=owner, labels=base_labels(owner, model)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": metrics,
        },
    }


def owns_replicas(workload: Mapping[str, Any], *, manager: str) -> bool:
    """Does ``manager``'s server-side apply own ``spec.replicas`` of this object (managedFields)?"""
    for entry in workload.get("metadata", {}).get("managedFields") or ():
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
            if "f:replicas" in fields:
                return True
    return False


def handover(workload: Mapping[str, Any], *, manager: str) -> Manifest | None:
    """What :data:`HANDOVER_MANAGER` applies before ``manager`` stops applying replicas, or None
    when ``manager`` does not own them (nothing would be removed)."""
    replicas = (workload.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or not owns_replicas(workload, manager=manager):
        return None
    meta = workload["metadata"]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": replicas}}


def verdict(hpa: Mapping[str, Any] | None) -> Verdict:
    """The ``Autoscaling`` condition from the stable version's HPA as the API server returns it.

    False names the HPA's own reason and message (a pod without a CPU request, no metrics API, a
    metric no adapter serves): the user's to fix, so it is shown rather than retried in silence.
    """
    if hpa is None:
        return Verdict(type=AUTOSCALING, status=ConditionStatus.UNKNOWN, reason="Pending",
                       message="the HorizontalPodAutoscaler is being created")
    name = hpa["metadata"]["name"]
    status = hpa.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    for kind in _BLOCKING:
        condition = conditions.get(kind)
        if condition is not None and condition.get("status") == "False":
            return Verdict(type=AUTOSCALING, status=False, reason=str(condition.get("reason") or kind),
                           message=f"HorizontalPodAutoscaler {name}: {condition.get('message', '')}"[:1024])
    if not all(kind in conditions for kind in _BLOCKING):
        return Verdict(type=AUTOSCALING, status=ConditionStatus.UNKNOWN, reason="Pending",
                       message=f"HorizontalPodAutoscaler {name} has not read its metrics yet")
    spec = hpa.get("spec") or {}
    # A metric the HPA could not read is an empty entry at its index; it scales on the others.
    pairs = zip(spec.get("metrics") or (), status.get("currentMetrics") or (), strict=False)
    unread = [_metric_name(metric) for metric, current in pairs if not current.get("type")]
    if unread:
        return Verdict(type=AUTOSCALING, status=False, reason="MetricUnavailable",
                       message=f"HorizontalPodAutoscaler {name} cannot read {', '.join(unread)} and "
                               f"scales on its other metrics only (a Pods metric needs a metrics adapter "
                               f"serving it)")
    # No metric values: they change every reading, and a status rewritten each round says nothing.
    return Verdict(type=AUTOSCALING, status=True, reason="Active",
                   message=f"HorizontalPodAutoscaler {name}: {status.get('currentReplicas', 0)} pods "
                           f"(min {spec.get('minReplicas', 1)}, max {spec.get('maxReplicas')})")


def _metric_name(metric: Mapping[str, Any]) -> str:
    """How a metric of an HPA's spec is named in a message: cpu, or the Pods metric's name."""
    kind = str(metric.get("type", ""))
    source = metric.get(kind[:1].lower() + kind[1:]) or {}
    return str(source.get("name") or (source.get("metric") or {}).get("name") or kind)
