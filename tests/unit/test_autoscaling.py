"""spec.autoscaling: the model, the HPA builder, the handover of replicas, the canary following the
autoscaled stable size, and the controller never writing the replicas an autoscaler owns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from fake_api import NS, FakeApi
from loopwright.api.deployment import (
    REQUESTS_PER_SECOND_METRIC,
    DeploymentPhase,
    DeploymentSpec,
    DeploymentStatus,
)
from loopwright.api.kinds import DEPLOYMENT, MODEL_VERSION
from loopwright.core.rollout import canary, traffic
from loopwright.core.rollout.canary import Target, World
from loopwright.operator.builders import autoscaler
from loopwright.operator.builders import predictor as build
from loopwright.operator.builders.common import Owner
from loopwright.operator.controllers import deployment
from loopwright.operator.runtime.client import AUTOSCALERS, EVENTS, WORKLOADS, resource

MLD, MV = resource(DEPLOYMENT), resource(MODEL_VERSION)
OWNER = Owner(kind="Deployment", name="iris", uid="u-1", namespace=NS)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
AUTO = {"minReplicas": 1, "maxReplicas": 6, "targetCPUUtilizationPercentage": 50}


def _spec(**extra: Any) -> DeploymentSpec:
    return DeploymentSpec.model_validate({
        "model": "iris", "replicas": 2, "autoscaling": AUTO,
        "rollout": {"steps": [{"weight": 25, "pause": "10s"}, {"weight": 50, "pause": "10s"}],
                    "analysis": {"interval": "2s", "failureLimit": 1, "minRequests": 5}},
        **extra})


# -- the model ------------------------------------------------------------------------------------


def test_min_above_max_is_refused_with_the_message_the_crd_gives() -> None:
    with pytest.raises(ValidationError, match="minReplicas must not exceed maxReplicas"):
        DeploymentSpec.model_validate({"model": "iris", "autoscaling": {"minReplicas": 4, "maxReplicas": 3}})


def test_autoscaling_defaults_and_wire_names() -> None:
    spec = DeploymentSpec.model_validate({"model": "iris", "autoscaling": {"maxReplicas": 3}})
    assert spec.autoscaling is not None
    assert spec.autoscaling.to_wire() == {"minReplicas": 1, "maxReplicas": 3,
                                          "targetCPUUtilizationPercentage": 80}


# -- builders -------------------------------------------------------------------------------------


def test_the_hpa_targets_the_version_workload_and_belongs_to_the_mld() -> None:
    spec = _spec()
    assert spec.autoscaling is not None
    hpa = autoscaler.autoscaler(owner=OWNER, model="iris", version=3, autoscaling=spec.autoscaling)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "iris-v3" == build.workload_name("iris", 3)
    assert hpa["metadata"]["namespace"] == NS
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert hpa["metadata"]["labels"]["loopwright.dev/deployment"] == "iris"
    assert hpa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "loopwright"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris-v3"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]


def test_requests_per_second_is_a_second_pods_metric() -> None:
    spec = DeploymentSpec.model_validate({"model": "iris", "autoscaling": {"maxReplicas": 4,
                                                                          "targetRequestsPerSecond": 20}})
    assert spec.autoscaling is not None
    hpa = autoscaler.autoscaler(owner=OWNER, model="iris", version=1, autoscaling=spec.autoscaling)
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"] == {
        "metric": {"name": "loopwright_predictor_requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "20"}}


def _managed(manager: str, operation: str = "Apply", *, replicas: bool = True) -> dict[str, Any]:
    fields: dict[str, Any] = {"f:selector": {}, **({"f:replicas": {}} if replicas else {})}
    return {"manager": manager, "operation": operation, "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": fields}}


def _workload(replicas: int, *managed: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "iris-v1", "namespace": NS, "managedFields": list(managed)},
            "spec": {"replicas": replicas}}


def test_replicas_are_handed_over_only_when_the_operator_applied_them() -> None:
    owned = _workload(3, _managed("loopwright"), _managed("kube-controller-manager", "Update"))
    assert autoscaler.handover(owned, manager="loopwright") == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "iris-v1", "namespace": NS},
        "spec": {"replicas": 3}}
    # Already without the operator's claim (handed over, or the HPA's since): nothing to do.
    assert autoscaler.handover(_workload(3, _managed("loopwright", replicas=False),
                                         _managed("loopwright-handover")), manager="loopwright") is None
    assert autoscaler.handover(_workload(3, _managed("loopwright", "Update")), manager="loopwright") is None


def _hpa(*conditions: tuple[str, str, str, str], current: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "iris-v1"}, "spec": {"minReplicas": 1, "maxReplicas": 3},
            "status": {"currentReplicas": current, "conditions": [
                {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]}}


def test_the_autoscaling_condition_says_why_the_hpa_cannot_scale() -> None:
    assert autoscaler.verdict(None).status == "Unknown"
    assert autoscaler.verdict(_hpa()).status == "Unknown"  # created, no reading yet
    failing = autoscaler.verdict(_hpa(
        ("AbleToScale", "True", "SucceededGetScale", "ok"),
        ("ScalingActive", "False", "FailedGetResourceMetric",
         "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request "
         "for cpu in container predictor")))
    assert (failing.status, failing.reason) == (False, "FailedGetResourceMetric")
    assert failing.message.startswith("HorizontalPodAutoscaler iris-v1: the HPA was unable")
    # Under load the HPA scales on CPU and leaves the unreadable requests-per-second metric empty.
    partial = _hpa(("AbleToScale", "True", "ReadyForNewScale", "ok"),
                   ("ScalingActive", "True", "ValidMetricFound", "ok"))
    partial["spec"]["metrics"] = [
        {"type": "Resource", "resource": {"name": "cpu", "target": {}}},
        {"type": "Pods", "pods": {"metric": {"name": REQUESTS_PER_SECOND_METRIC}, "target": {}}}]
    partial["status"]["currentMetrics"] = [{"type": "Resource", "resource": {"name": "cpu", "current": {}}},
                                           {"type": ""}]
    unread = autoscaler.verdict(partial)
    assert (unread.status, unread.reason) == (False, "MetricUnavailable")
    assert f"cannot read {REQUESTS_PER_SECOND_METRIC} and scales on" in unread.message
    active = autoscaler.verdict(_hpa(("AbleToScale", "True", "ReadyForNewScale", "ok"),
                                     ("ScalingActive", "True", "ValidMetricFound", "ok"), current=3))
    assert (active.status, active.reason) == (True, "Active")
    assert active.message == "HorizontalPodAutoscaler iris-v1: 3 pods (min 1, max 3)"


def test_without_replicas_the_workload_manifest_leaves_them_to_the_autoscaler() -> None:
    served = build.Served(model="iris", version=1, model_version="iris-v1", artifact_uri="s3://b/m",
                          artifact_sha256="a" * 64, profile_uri="s3://b/p", profile_sha256=None)
    settings = build.PodSettings(image="i", s3_endpoint=None, credentials_secret=None, artifact_bucket="b")
    manual = build.deployment(owner=OWNER, spec=_spec(), served=served, replicas=2, settings=settings)
    auto = build.deployment(owner=OWNER, spec=_spec(), served=served, replicas=None, settings=settings)
    assert manual["spec"]["replicas"] == 2
    assert "replicas" not in auto["spec"]
    assert {k: v for k, v in manual["spec"].items() if k != "replicas"} == auto["spec"]


# -- replica arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(("weight", "stable", "maximum", "gateway", "canary"), [
    (0, 4, 6, False, 0),
    (25, 3, 6, False, 1),  # 1 of 4 pods
    (25, 9, 6, False, 3),  # follows the stable: 3 of 12
    (50, 4, 6, False, 4),
    (90, 2, 6, False, 6),  # 18 would be 90%: capped at maxReplicas
    (100, 5, 6, False, 5),  # a promotion: the stable's full size
    (10, 0, 6, False, 1),  # a stable scaled to zero by hand: the canary still gets a pod
    (25, 8, 6, True, 2),  # gatewayAPI: capacity for a quarter of the traffic
])
def test_the_canary_follows_its_weight_of_the_autoscaled_stable_size(
        weight: int, stable: int, maximum: int, gateway: bool, canary: int) -> None:
    split = traffic.autoscaled_split(weight=weight, stable=stable, maximum=maximum, gateway=gateway)
    assert (split.stable, split.canary) == (stable, canary)


def test_a_weight_outside_0_100_is_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        traffic.autoscaled_split(weight=101, stable=1, maximum=3)


class Rounds:
    """The planner round after round, with the stable size an autoscaler would have set."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec, self.status, self.now = spec, DeploymentStatus(), T0

    def plan(self, target: int, *, size: int | None, ready: dict[int, int],
             advance: float = 0.0) -> canary.Plan:
        self.now += timedelta(seconds=advance)
        plan = canary.plan(World(now=self.now, generation=1, spec=self.spec, status=self.status,
                                 target=Target(version=target, name=f"iris-v{target}"), ready=ready,
                                 stable_size=size))
        self.status = DeploymentStatus.model_validate(plan.status.to_wire())
        return plan


def _sizes(plan: canary.Plan) -> list[tuple[int, int, bool]]:
    return [(w.version, w.replicas, w.autoscaled) for w in plan.workloads]


def test_the_stable_is_never_resized_and_the_canary_follows_it() -> None:
    r = Rounds(_spec())
    # No workload yet: minReplicas (the HPA starts from there); spec.replicas (2) is ignored.
    assert _sizes(r.plan(1, size=None, ready={})) == [(1, 1, True)]
    assert r.status.replicas == 1
    # The autoscaler went to 4: that is the stable's size now, and the status says so.
    assert _sizes(r.plan(1, size=4, ready={1: 4})) == [(1, 4, True)]
    assert r.status.stable is not None
    assert r.status.stable.replicas == 4
    # A canary at 25%: one pod beside the 4, the stable left to its autoscaler.
    plan = r.plan(2, size=4, ready={1: 4})
    assert r.status.phase == DeploymentPhase.PROGRESSING
    assert _sizes(plan) == [(1, 4, True), (2, 1, False)]
    # Load grows, the autoscaler doubles the stable: the canary keeps its quarter of the traffic.
    assert _sizes(r.plan(2, size=9, ready={1: 9, 2: 1})) == [(1, 9, True), (2, 3, False)]
    assert r.status.canary is not None
    assert r.status.canary.replicas == 3
    assert r.status.replicas == 12


def test_a_promotion_switches_at_the_autoscaled_size() -> None:
    r = Rounds(_spec(rollout={"steps": [{"weight": 50}]}))
    r.plan(1, size=3, ready={1: 3})
    r.plan(2, size=3, ready={1: 3, 2: 3})
    r.spec = _spec(rollout={"steps": [{"weight": 50}], "promote": {"version": 2}})
    plan = r.plan(2, size=5, ready={1: 5, 2: 3})
    assert r.status.phase == DeploymentPhase.PROMOTING
    assert _sizes(plan) == [(1, 5, True), (2, 5, False)]
    plan = r.plan(2, size=5, ready={1: 5, 2: 5})
    assert r.status.stable is not None
    assert r.status.stable.version == 2
    assert _sizes(plan) == [(2, 5, True)]


def test_a_canary_growing_with_the_stable_is_not_a_stuck_step() -> None:
    r = Rounds(_spec())
    r.plan(1, size=3, ready={1: 3})
    r.plan(2, size=3, ready={1: 3})
    r.plan(2, size=3, ready={1: 3, 2: 1}, advance=1)  # the step's weight is reached
    assert r.status.canary is not None
    assert r.status.canary.weight_reached_time is not None
    r.plan(2, size=9, ready={1: 9, 2: 1}, advance=60)  # the stable grew: 3 canary pods wanted
    r.plan(2, size=9, ready={1: 9, 2: 1}, advance=700)  # past progressDeadline (10m), still 1 ready
    assert r.status.canary is not None
    assert r.status.phase == DeploymentPhase.PROGRESSING


# -- the controller on the fake API ---------------------------------------------------------------


def _world(api: FakeApi, spec: dict[str, Any]) -> None:
    api.add(MV, {"metadata": {"name": "iris-v1"}, "spec": {
        "model": "iris", "version": 1, "profileUri": "s3://b/p.json",
        "artifact": {"uri": "s3://b/m.skops", "sha256": "a" * 64, "format": "skops"}},
        "status": {"phase": "Validated"}})
    api.add(MLD, {"metadata": {"name": "iris"}, "spec": spec})


def _reconcile(api: FakeApi) -> dict[str, Any]:
    api.applied.clear()
    api.calls.clear()
    api.run(deployment.Deployments().reconcile(api.context(), (NS, "iris")))
    return (api.obj(MLD, "iris") or {})["status"]


def _applied(api: FakeApi, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(manager, body) for manager, body in api.applied if body["kind"] == kind]


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == type_), None)


def test_the_controller_leaves_replicas_to_the_hpa_and_prunes_it_when_autoscaling_ends() -> None:
    api = FakeApi()
    _world(api, {"model": "iris", "autoscaling": AUTO})
    status = _reconcile(api)
    ((manager, workload),) = _applied(api, "Deployment")
    assert manager == "loopwright"
    assert "replicas" not in workload["spec"]
    ((_, hpa),) = _applied(api, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "iris-v1"
    assert "PATCH deployments/iris-v1/scale" not in api.calls
    assert (status["replicas"], status["selector"]) == (1, "loopwright.dev/deployment=iris")
    assert (_condition(status, "Autoscaling") or {})["status"] == "Unknown"

    # The HPA scaled the workload to 3 and reports a problem: the status shows both, one Event.
    api.run(api.patch(WORKLOADS, NS, "iris-v1", {"spec": {"replicas": 3}}))
    api.run(api.patch(AUTOSCALERS, NS, "iris-v1", {"status": _hpa(
        ("AbleToScale", "True", "SucceededGetScale", "ok"),
        ("ScalingActive", "False", "FailedGetResourceMetric", "missing request for cpu"))["status"]},
        subresource="status"))
    status = _reconcile(api)
    assert status["replicas"] == status["stable"]["replicas"] == 3
    assert "replicas" not in _applied(api, "Deployment")[0][1]["spec"]
    condition = _condition(status, "Autoscaling") or {}
    assert (condition["status"], condition["reason"]) == ("False", "FailedGetResourceMetric")
    warnings = [e for e in api.all(EVENTS).values() if e["reason"] == "FailedGetResourceMetric"]
    assert len(warnings) == 1
    assert "missing request for cpu" in warnings[0]["message"]

    # Autoscaling off: the HPA goes, spec.replicas is applied again, the condition disappears.
    api.run(api.patch(MLD, NS, "iris", {"spec": {"autoscaling": None, "replicas": 2}}))
    status = _reconcile(api)
    assert "DELETE horizontalpodautoscalers/iris-v1" in api.calls
    assert api.all(AUTOSCALERS) == {}
    assert _applied(api, "Deployment")[0][1]["spec"]["replicas"] == 2
    assert _condition(status, "Autoscaling") is None
    assert status["replicas"] == 2


def test_replicas_the_operator_applied_are_handed_over_before_it_stops_applying_them() -> None:
    api = FakeApi()
    _world(api, {"model": "iris", "replicas": 4})
    _reconcile(api)
    assert _applied(api, "Deployment")[0][1]["spec"]["replicas"] == 4
    # What the API server records for that apply: the operator owns spec.replicas.
    api.run(api.patch(WORKLOADS, NS, "iris-v1", {"metadata": {"managedFields": [_managed("loopwright")]}}))
    api.run(api.patch(MLD, NS, "iris", {"spec": {"autoscaling": AUTO}}))
    status = _reconcile(api)
    workloads = _applied(api, "Deployment")
    assert [(m, b["spec"]) for m, b in workloads[:1]] == [("loopwright-handover", {"replicas": 4})]
    assert workloads[1][0] == "loopwright"
    assert "replicas" not in workloads[1][1]["spec"]
    assert status["replicas"] == 4  # the size it had, which the HPA starts from
