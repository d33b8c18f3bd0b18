"""The pod template overlay: layers, default resources, and the restricted pod it never weakens."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from loopwright.api.common import ResourceRequirements
from loopwright.api.dataset import DatasetSpec
from loopwright.api.podtemplate import PodTemplate
from loopwright.operator import config
from loopwright.operator.builders import jobs
from loopwright.operator.builders.common import Owner, restricted_container_security, restricted_pod_security
from loopwright.operator.builders.pods import DEFAULT_RESOURCES, Role, apply, merged_resources, quantity

BASE: dict[str, Any] = {
    "metadata": {"labels": {"loopwright.dev/deployment": "iris",
                            "app.kubernetes.io/managed-by": "loopwright"},
                 "annotations": {"prometheus.io/scrape": "true"}},
    "spec": {"automountServiceAccountToken": False, "securityContext": restricted_pod_security(),
             "containers": [{"name": "main", "securityContext": restricted_container_security()}]},
}
SELECTOR = {"loopwright.dev/deployment": "iris"}


def _apply(**kwargs: Any) -> dict[str, Any]:
    return apply(BASE, role=Role.PREDICTOR, container="main", selector=SELECTOR, **kwargs)


def test_no_layer_gives_the_role_defaults_and_leaves_the_rest() -> None:
    out = _apply()
    assert out["spec"]["containers"][0]["resources"] == DEFAULT_RESOURCES[Role.PREDICTOR].to_wire()
    assert out["metadata"] == BASE["metadata"]
    assert set(out["spec"]) == {"automountServiceAccountToken", "securityContext", "containers"}
    assert "resources" not in BASE["spec"]["containers"][0]  # the input is not modified


@pytest.mark.parametrize("role", list(Role))
def test_every_role_has_requests_and_limits_for_cpu_and_memory(role: Role) -> None:
    wire = DEFAULT_RESOURCES[role].to_wire()
    assert set(wire["requests"]) == set(wire["limits"]) == {"cpu", "memory"}  # type: ignore[call-overload]
    assert all(quantity(wire["requests"][k]) <= quantity(wire["limits"][k])  # type: ignore[index]
               for k in ("cpu", "memory"))


def test_the_object_wins_over_the_operator_defaults() -> None:
    defaults = PodTemplate.model_validate({
        "nodeSelector": {"pool": "ml", "arch": "amd64"}, "tolerations": [{"key": "ml", "operator": "Exists"}],
        "priorityClassName": "low", "imagePullSecrets": [{"name": "registry"}],
        "labels": {"team": "platform", "cost": "shared"}, "annotations": {"a": "1"}})
    overlay = PodTemplate.model_validate({
        "nodeSelector": {"pool": "gpu"}, "priorityClassName": "high", "serviceAccountName": "fraud",
        "labels": {"team": "fraud"}, "annotations": {"b": "2"},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname"}]})
    out = _apply(defaults=defaults, overlay=overlay)
    spec, meta = out["spec"], out["metadata"]
    assert spec["nodeSelector"] == {"pool": "gpu", "arch": "amd64"}  # maps merge key by key
    assert spec["tolerations"] == [{"key": "ml", "operator": "Exists"}]  # kept: the object set none
    assert spec["priorityClassName"] == "high"
    assert spec["serviceAccountName"] == "fraud"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["affinity"] == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    # A spread constraint without a selector spreads this workload's pods.
    assert spec["topologySpreadConstraints"] == [{
        "labelSelector": {"matchLabels": SELECTOR}, "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway"}]
    assert meta["labels"] == {**BASE["metadata"]["labels"], "team": "fraud", "cost": "shared"}
    assert meta["annotations"] == {"prometheus.io/scrape": "true", "a": "1", "b": "2"}


def test_an_overlay_never_weakens_the_restricted_pod() -> None:
    # Admission refuses such fields (tests/cel_cases.py); the builder holds even if a model is forged.
    forged = PodTemplate.model_construct(labels={"loopwright.dev/deployment": "other"})
    hostile = {**BASE, "spec": {**BASE["spec"], "hostNetwork": True, "securityContext": {"runAsUser": 0},
                                "automountServiceAccountToken": True,
                                "containers": [{"name": "main", "securityContext": {"privileged": True}}]}}
    out = apply(hostile, role=Role.TRAINER, container="main", selector=SELECTOR, overlay=forged)
    assert out["spec"]["securityContext"] == restricted_pod_security()
    assert out["spec"]["containers"][0]["securityContext"] == restricted_container_security()
    assert out["spec"]["automountServiceAccountToken"] is False
    assert "hostNetwork" not in out["spec"]
    assert out["metadata"]["labels"]["loopwright.dev/deployment"] == "iris"  # the operator's label wins


@pytest.mark.parametrize("overlay", [
    {"securityContext": {"runAsUser": 0}}, {"hostNetwork": True}, {"containers": []}, {"volumes": []},
    {"affinity": {"securityContext": {}}}, {"labels": {"loopwright.dev/x": "y"}},
    {"annotations": {"app.kubernetes.io/name": "x"}},
])
def test_the_model_refuses_what_would_weaken_or_hijack(overlay: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (pydantic's ValidationError)
        PodTemplate.model_validate(overlay)


def test_resources_merge_key_by_key_and_stay_admissible() -> None:
    def res(**kw: Any) -> ResourceRequirements:
        return ResourceRequirements.model_validate(kw)

    layers = [res(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "2", "memory": "1Gi"}),
              res(requests={"memory": "8Gi"}),  # above the default limit: the limit follows
              res(limits={"cpu": "50m"})]  # below the default request: the request follows
    assert merged_resources(layers) == {"requests": {"cpu": "50m", "memory": "8Gi"},
                                        "limits": {"cpu": "50m", "memory": "8Gi"}}
    assert merged_resources([None, res(limits={"nvidia.com/gpu": 1})]) == {"limits": {"nvidia.com/gpu": 1}}


@pytest.mark.parametrize(("text", "value"), [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), (3, Decimal(3)), ("1Gi", Decimal(2**30)),
    ("1e3", Decimal(1000)), ("1.5k", Decimal(1500)),
])
def test_quantity(text: str | int, value: Decimal) -> None:
    assert quantity(text) == value


def test_operator_config_defaults_reach_every_job() -> None:
    cfg = config.load({
        "LOOPWRIGHT_POD_DEFAULTS": "nodeSelector: {pool: ml}\npriorityClassName: batch\n",
        "LOOPWRIGHT_DEFAULT_RESOURCES": '{"profiler": {"limits": {"memory": "3Gi"}}}',
    })
    settings = jobs.JobSettings(image="i", s3_endpoint=None, credentials_secret=None,
                                pod_defaults=cfg.pod_defaults, default_resources=cfg.default_resources)
    spec = DatasetSpec.model_validate({
        "source": {"uri": "s3://bucket/k.csv"}, "schema": {"label": {"name": "y", "task": "classification"},
                                                      "columns": [{"name": "x", "type": "numeric"}]},
        "podTemplate": {"tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]}})
    owner = Owner(kind="Dataset", name="d", uid="u", namespace="ns")
    job = jobs.profiling_job(namespace="ns", name="d-p", owner=owner, spec=spec, output_prefix="s3://b/p",
                             labels={"loopwright.dev/dataset": "d"}, settings=settings)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "ml"}
    assert pod["priorityClassName"] == "batch"
    assert pod["tolerations"] == [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                 "limits": {"cpu": "1", "memory": "3Gi"}}
    verify = jobs.verification_job(namespace="ns", name="v", owner=owner, uri="s3://b/m", sha256="0" * 64,
                                   labels={}, settings=settings)
    assert verify["spec"]["template"]["spec"]["containers"][0]["resources"] == \
        DEFAULT_RESOURCES[Role.VERIFIER].to_wire()


@pytest.mark.parametrize(("name", "value"), [
    ("POD_DEFAULTS", "nodeSelector: [a"), ("POD_DEFAULTS", "securityContext: {runAsUser: 0}"),
    ("DEFAULT_RESOURCES", "{builder: {}}"), ("DEFAULT_RESOURCES", "{trainer: {requests: {cpu: lots}}}"),
])
def test_bad_pod_settings_stop_the_operator_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=f"LOOPWRIGHT_{name}"):
        config.load({f"LOOPWRIGHT_{name}": value})
