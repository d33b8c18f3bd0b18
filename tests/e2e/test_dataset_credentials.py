"""A Dataset's own S3 credentials (spec.source.credentialsSecretRef) on a real cluster.

The operator checks a source with the key pair in the Secret the Dataset names, not with its
own: shown by giving the operator a wrong secret key, under which only the Dataset with its own
Secret gets past the check. The local S3 (versitygw without an IAM backend) has one account,
so "a key pair S3 accepts" and "a key pair S3 refuses" stand in for two users. A Secret that is
missing, lacks a key or holds refused credentials is reported on the Dataset, once as an
Event, and retried at the refresh interval until it is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import S3, Crd, Kube
from e2e.test_training import dataset, make_csv
from operator_fixture import Operator

pytestmark = pytest.mark.cluster

TIMEOUT = 180
ROWS = 120


class Datasets:
    """Create and read the Datasets, Secrets and Events of one test namespace."""

    def __init__(self, kube: Kube, namespace: str, crd: Crd, s3: S3, operator: Operator) -> None:
        self.kube, self.ns, self.crd, self.s3, self.operator = kube, namespace, crd, s3, operator

    def upload(self, key: str, data: bytes) -> str:
        full = f"e2e/{self.ns}/{key}"
        self.s3.client().put_object(Bucket=self.s3.bucket, Key=full, Body=data)
        return f"s3://{self.s3.bucket}/{full}"

    def create(self, name: str, uri: str, *, secret: str | None) -> None:
        body = dataset(name, uri, refresh="2s", min_rows=20)
        if secret:
            body["spec"]["source"]["credentialsSecretRef"] = {"name": secret}
        self.kube.custom.create_namespaced_custom_object(self.crd.group, self.crd.version, self.ns,
                                                         self.crd.plural, body)

    def put_secret(self, name: str, data: dict[str, str]) -> None:
        """Create or replace a Secret (replacing drops keys left out, as `kubectl apply` would)."""
        body = {"metadata": {"name": name}, "stringData": data}
        if any(s.metadata.name == name for s in self.kube.core.list_namespaced_secret(self.ns).items):
            self.kube.core.replace_namespaced_secret(name, self.ns, body)
        else:
            self.kube.core.create_namespaced_secret(self.ns, body)

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.kube.custom.get_namespaced_custom_object(
            self.crd.group, self.crd.version, self.ns, self.crd.plural, name)
        return obj

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        conditions = (self.get(name).get("status") or {}).get("conditions") or ()
        return next((c for c in conditions if c["type"] == type_), {})

    def events(self, name: str) -> list[Any]:
        selector = f"involvedObject.name={name}"
        return list(self.kube.core.list_namespaced_event(self.ns, field_selector=selector).items)

    def warnings(self, name: str, reason: str) -> list[str]:
        return [e.message for e in self.events(name) if e.reason == reason and e.type == "Warning"]

    def wait(self, probe: Callable[[], Any], *, what: str) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while not (result := probe()):
            if time.monotonic() > deadline:
                log = self.operator.log()[-6000:]
                pytest.fail(f"timed out waiting for {what}\n--- operator log ---\n{log}")
            time.sleep(0.5)
        return result

    def wait_ready_reason(self, name: str, reason: str, *, containing: str = "") -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            ready = self.condition(name, "Ready")
            return ready if ready.get("reason") == reason and containing in ready.get("message", "") else None

        found: dict[str, Any] = self.wait(probe, what=f"Dataset {name} Ready {reason} ({containing!r})")
        assert found["status"] == "False", found
        return found

    def wait_validated(self, name: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get(name)
            validated = self.condition(name, "Validated")
            return obj if validated.get("status") == "True" else None

        found: dict[str, Any] = self.wait(probe, what=f"Dataset {name} Validated=True")
        return found

    def assert_no_secret_leaked(self, *names: str) -> None:
        """The secret key is nowhere a user or an admin would look: status, Events, the operator log."""
        secret = self.s3.secret_key
        for name in names:
            assert secret not in str(self.get(name).get("status"))
            assert all(secret not in (e.message or "") for e in self.events(name))
        assert secret not in self.operator.log()


@pytest.fixture
def datasets(kube: Kube, namespace: str, crds: dict[str, Crd], s3: S3, operator: Operator) -> Datasets:
    return Datasets(kube, namespace, crds["Dataset"], s3, operator)


def _grant(s3: S3) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}


def test_the_datasets_secret_checks_its_source_not_the_operators_keys(datasets: Datasets,
                                                                       operator: Operator) -> None:
    operator.allow_secrets()
    uri = datasets.upload("granted/data.csv", make_csv(rows=ROWS, seed=3))
    datasets.put_secret("source-s3", _grant(datasets.s3))
    operator.env["AWS_SECRET_ACCESS_KEY"] = "not-the-operators-key"
    operator.restart()

    datasets.create("granted", uri, secret="source-s3")
    datasets.create("own", uri, secret=None)
    # The operator's own keys are refused, and it says whose keys they were.
    refused = datasets.wait_ready_reason("own", "AccessDenied", containing="the operator's own credentials")
    assert "access denied" in refused["message"], refused
    # The Dataset with its own Secret passed the check: a profiling Job reads the source.
    datasets.wait(lambda: datasets.kube.batch.list_namespaced_job(
        datasets.ns, label_selector="loopwright.dev/dataset=granted").items, what="granted's profiling Job")
    assert datasets.condition("granted", "Ready").get("reason") != "AccessDenied"
    # Several refresh intervals later the refusal is still one Warning, not one per check.
    time.sleep(6)
    assert len(datasets.warnings("own", "AccessDenied")) == 1
    assert datasets.condition("own", "Ready")["reason"] == "AccessDenied"

    # The profile result lives in the operator's artifact store: with its keys restored, it
    # reads the result and the Dataset is validated.
    operator.env["AWS_SECRET_ACCESS_KEY"] = datasets.s3.secret_key
    operator.restart()
    validated = datasets.wait_validated("granted")
    assert validated["status"]["rows"] == ROWS
    assert datasets.condition("granted", "Ready")["status"] == "True"
    datasets.assert_no_secret_leaked("granted", "own")
    assert "Traceback" not in operator.log()


def test_missing_or_refused_credentials_are_reported_and_retried(datasets: Datasets,
                                                                  operator: Operator) -> None:
    operator.allow_secrets()
    uri = datasets.upload("late/data.csv", make_csv(rows=ROWS, seed=4))
    datasets.create("late", uri, secret="late-s3")

    missing = datasets.wait_ready_reason("late", "CredentialsNotFound", containing="late-s3")
    assert "not found" in missing["message"]
    assert datasets.condition("late", "Validated").get("status") != "True"

    datasets.put_secret("late-s3", {"AWS_ACCESS_KEY_ID": datasets.s3.access_key})
    datasets.wait_ready_reason("late", "CredentialsNotFound", containing="no key AWS_SECRET_ACCESS_KEY")

    datasets.put_secret("late-s3", {**_grant(datasets.s3), "AWS_SECRET_ACCESS_KEY": "wrong"})
    datasets.wait_ready_reason("late", "AccessDenied", containing="the credentials of Secret late-s3")

    # Fixed: picked up at the next refresh (Secrets are read, never watched), then profiled.
    datasets.put_secret("late-s3", _grant(datasets.s3))
    validated = datasets.wait_validated("late")
    assert validated["status"]["rows"] == ROWS
    assert datasets.condition("late", "Ready")["status"] == "True"

    # One Warning per change of reason, however many refreshes saw it.
    assert len(datasets.warnings("late", "CredentialsNotFound")) == 1
    assert len(datasets.warnings("late", "AccessDenied")) == 1
    datasets.assert_no_secret_leaked("late")
    assert "Traceback" not in operator.log()
