"""Operator configuration, kopf settings and the metrics/health endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from aiohttp.test_utils import TestClient, TestServer
from kopf._cogs.structs.references import Resource

from loopwright.api.kinds import ALL_KINDS, TRAINING_PIPELINE
from loopwright.api.labels import child_labels
from loopwright.operator import config, metrics
from loopwright.operator.main import configure_kopf  # importing main registers every handler


def test_defaults() -> None:
    cfg = config.load({})
    assert cfg.namespaces == ()
    assert cfg.clusterwide
    assert cfg.artifact_bucket == "loopwright"
    assert cfg.s3_endpoint is None
    assert cfg.s3_secret is None
    # One ML image for every Job and the predictor (images/Dockerfile).
    assert cfg.trainer_image == cfg.predictor_image == "loopwright/ml:0.1.0"
    assert cfg.metrics_port == 8000


def test_all_settings() -> None:
    cfg = config.load(
        {
            "LOOPWRIGHT_NAMESPACES": "team-a, team-b",
            "LOOPWRIGHT_S3_ENDPOINT": "http://s3.loopwright-system.svc:9000",
            "LOOPWRIGHT_ARTIFACT_BUCKET": "ml-artifacts",
            "LOOPWRIGHT_S3_SECRET": "loopwright-system/loopwright-s3",
            "LOOPWRIGHT_TRAINER_IMAGE": "registry.local:5000/loopwright/trainer:dev",
            "LOOPWRIGHT_PREDICTOR_IMAGE": "loopwright/predictor@sha256:" + "a" * 64,
            "LOOPWRIGHT_METRICS_PORT": "9100",
        }
    )
    assert cfg.namespaces == ("team-a", "team-b")
    assert not cfg.clusterwide
    assert str(cfg.s3_secret) == "loopwright-system/loopwright-s3"
    assert cfg.metrics_port == 9100


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOOPWRIGHT_NAMESPACES", "Team_A"),
        ("LOOPWRIGHT_S3_ENDPOINT", "s3.local:9000"),
        ("LOOPWRIGHT_ARTIFACT_BUCKET", "My_Bucket"),
        ("LOOPWRIGHT_S3_SECRET", "just-a-name"),
        ("LOOPWRIGHT_S3_SECRET", "ns/"),
        ("LOOPWRIGHT_TRAINER_IMAGE", "has space:1"),
        ("LOOPWRIGHT_METRICS_PORT", "80a"),
        ("LOOPWRIGHT_METRICS_PORT", "70000"),
    ],
)
def test_bad_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=name):
        config.load({name: value})


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load({"LOOPWRIGHT_METRICS_PORT": "0", "LOOPWRIGHT_ARTIFACT_BUCKET": "x"})
    assert "LOOPWRIGHT_METRICS_PORT" in str(info.value)
    assert "LOOPWRIGHT_ARTIFACT_BUCKET" in str(info.value)


def test_kopf_settings() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    # No diff base is built: valid while no handler needs one (create/update/field handlers).
    assert kopf.get_default_registry()._changing.get_all_handlers() == []
    assert settings.persistence.consistency_timeout < 5
    assert settings.watching.server_timeout is not None
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout
    backoffs = list(settings.networking.error_backoffs)  # type: ignore[arg-type]
    assert max(backoffs) <= 5  # after an outage, back within seconds
    assert sum(backoffs) >= 600  # and kept trying for ten minutes
    # The predictor children are watched (for their deletion) through a server-side selector only.
    resources = [kopf_resource("apps", "deployments"), kopf_resource("", "services")]
    assert [settings.watching.label_selectors.collect(r) for r in resources] == [
        ["loopwright.dev/deployment"], ["loopwright.dev/deployment"]]


def kopf_resource(group: str, plural: str) -> Any:
    from kopf._cogs.structs.references import Resource  # noqa: PLC0415 (kopf's own type, for a lookup)

    return Resource(group=group, version="v1", plural=plural, namespaced=True, verbs=["list", "watch"])


def test_jobs_are_filtered_by_the_api_server() -> None:
    """kopf sends this as labelSelector on the list and watch of Jobs (kopf/_cogs/clients/watching.py);
    the handlers' labels= filters alone would stream every Job of the cluster to the operator."""
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    jobs = Resource("batch", "v1", "jobs", kind="Job", namespaced=True)
    selectors = list(settings.watching.label_selectors.collect(jobs))
    assert selectors == ["app.kubernetes.io/managed-by=loopwright"]
    pipelines = Resource(TRAINING_PIPELINE.group, TRAINING_PIPELINE.version, TRAINING_PIPELINE.plural)
    assert list(settings.watching.label_selectors.collect(pipelines)) == []


def test_egress_allow_list() -> None:
    allow = "prometheus.monitoring.svc, .svc.cluster.local, 10.0.0.0/8"
    cfg = config.load({"LOOPWRIGHT_EGRESS_ALLOW": allow})
    assert cfg.egress.allow == ("prometheus.monitoring.svc", ".svc.cluster.local", "10.0.0.0/8")
    assert config.load({}).egress.allow == ()
    with pytest.raises(config.ConfigError, match="LOOPWRIGHT_EGRESS_ALLOW"):
        config.load({"LOOPWRIGHT_EGRESS_ALLOW": "10.0.0.0/33"})


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_reconcile_metrics_count_errors() -> None:
    before = _value("loopwright_operator_reconciles_total", kind="Test", handler="h")
    errors = _value("loopwright_operator_reconcile_errors_total", kind="Test", handler="h")
    with metrics.reconcile(kind="Test", handler="h"):
        pass
    with pytest.raises(RuntimeError), metrics.reconcile(kind="Test", handler="h"):
        raise RuntimeError("boom")
    assert _value("loopwright_operator_reconciles_total", kind="Test", handler="h") == before + 2
    assert _value("loopwright_operator_reconcile_errors_total", kind="Test", handler="h") == errors + 1
    assert _value("loopwright_operator_reconcile_duration_seconds_count", kind="Test") >= 2


def test_http_endpoints() -> None:
    async def fetch() -> tuple[int, str, int, str]:
        async with TestClient(TestServer(metrics.app())) as client:
            health = await client.get("/healthz")
            scrape = await client.get("/metrics")
            return health.status, await health.text(), scrape.status, await scrape.text()

    health_code, health_text, metrics_code, body = asyncio.run(fetch())
    assert (health_code, health_text) == (200, "ok\n")
    assert metrics_code == 200
    assert "loopwright_operator_reconciles_total" in body
    assert "process_resident_memory_bytes" in body



def test_child_labels_name_the_group() -> None:
    assert child_labels(TRAINING_PIPELINE, "churn") == {
        "app.kubernetes.io/managed-by": "loopwright",
        "loopwright.dev/trainingpipeline": "churn",
    }


def _resource_handlers() -> list[Any]:
    # kopf has no public listing of registered handlers; these registries are stable since 1.30.
    registry = kopf.get_default_registry()
    return [
        h
        for part in (registry._changing, registry._watching, registry._spawning)
        for h in part.get_all_handlers()
    ]


def test_handlers_name_their_group_and_id() -> None:
    """Every selector names its API group (our Deployment must never match apps/v1), and every
    handler has an explicit id, so a renamed function does not re-run finished handlers."""
    handlers = _resource_handlers()
    served = {h.selector.plural for h in handlers if h.selector.group == "loopwright.dev"}
    assert served >= {k.plural for k in ALL_KINDS}
    for handler in handlers:
        assert handler.selector.group is not None, handler.id
        assert handler.selector.version is not None, handler.id
        assert "." in handler.id, f"{handler.id}: ids are <kind>.<step>, set with id="
