"""Dataset versions: profile identity and the status after a profile."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from loopwright import storage
from loopwright.api.dataset import DatasetSpec, DatasetStatus
from loopwright.core import dataset as datasets
from loopwright.operator import credentials

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SPEC = {
    "source": {"uri": "s3://bkt/d.csv"},
    "schema": {
        "label": {"name": "y", "task": "classification"},
        "columns": [{"name": "x", "type": "numeric"}],
    },
}
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def _spec(**changes: Any) -> DatasetSpec:
    return DatasetSpec.model_validate({**SPEC, **changes})


def test_profile_identity_follows_the_data_and_the_rules() -> None:
    key = datasets.profile_key(fingerprint="f1", spec=_spec())
    assert key == datasets.profile_key(fingerprint="f1", spec=_spec())
    assert key != datasets.profile_key(fingerprint="f2", spec=_spec())
    assert key != datasets.profile_key(fingerprint="f1", spec=_spec(validation={"minRows": 10}))
    assert key == datasets.profile_key(fingerprint="f1", spec=_spec(refreshInterval="1h"))
    assert datasets.profile_job_name("d", key) == f"d-profile-{key[:10]}"
    assert (
        datasets.output_prefix(bucket="bkt", namespace="ns", dataset="d", key=key)
        == f"s3://bkt/datasets/ns/d/{key}"
    )


def test_up_to_date_compares_the_profile_key() -> None:
    key = datasets.profile_key(fingerprint="f1", spec=_spec())
    status = DatasetStatus(source_fingerprint=key, observed_generation=1)
    assert datasets.up_to_date(status, key=key)
    # A spec change with the same data is a new profile, whatever observedGeneration says.
    assert not datasets.up_to_date(
        status, key=datasets.profile_key(fingerprint="f1", spec=_spec(validation={"minRows": 10}))
    )


def test_a_valid_version_becomes_the_validated_one() -> None:
    result = {"digest": D1, "rows": 100, "anomalies": [], "valid": True, "profileUri": "s3://bkt/p.json"}
    applied = datasets.apply_result(DatasetStatus(), result, key="f1", generation=1, now=NOW)
    assert applied.status["validatedVersion"] == D1
    assert applied.status["version"] == D1
    assert applied.status["shortVersion"] == "1" * 12
    assert applied.status["rows"] == 100
    assert applied.status["sourceFingerprint"] == "f1"
    assert applied.status["observedGeneration"] == 1
    assert [h["version"] for h in applied.status["history"]] == [D1]
    assert {(v.type, v.status) for v in applied.verdicts} == {("Validated", True), ("Ready", True)}
    assert [e.reason for e in applied.events] == ["NewVersion"]


def test_an_invalid_version_lists_every_anomaly_and_never_becomes_validated() -> None:
    before = DatasetStatus(validated_version=D1, version=D1)
    anomalies = [
        {"kind": "MissingColumn", "column": "x", "message": "column x is missing"},
        {"kind": "TooFewRows", "count": 3, "message": "3 rows, at least 10 required"},
    ]
    result = {"digest": D2, "rows": 3, "anomalies": anomalies, "valid": False}
    applied = datasets.apply_result(before, result, key="f2", generation=1, now=NOW)
    assert applied.status["version"] == D2
    assert applied.status["validatedVersion"] == D1
    assert [a["kind"] for a in applied.status["anomalies"]] == ["MissingColumn", "TooFewRows"]
    validated = next(v for v in applied.verdicts if v.type == "Validated")
    assert validated.status is False
    assert "MissingColumn" in validated.message
    assert "TooFewRows" in validated.message
    assert applied.events[0].type == "Warning"
    assert applied.events[0].reason == "ValidationFailed"
    assert applied.status["history"][0]["validated"] is False


def test_unreadable_data_has_no_digest() -> None:
    result = {
        "digest": None,
        "rows": 0,
        "valid": False,
        "anomalies": [{"kind": "Unreadable", "message": "not found"}],
    }
    applied = datasets.apply_result(DatasetStatus(), result, key="f", generation=1, now=NOW)
    assert applied.status["version"] is None
    assert applied.status["validatedVersion"] is None
    assert applied.status["history"] == []


def test_history_is_short_and_unique() -> None:
    status = DatasetStatus()
    for i in range(15):
        digest = f"sha256:{i:064x}"
        applied = datasets.apply_result(
            status, {"digest": digest, "rows": i, "valid": True}, key=str(i), generation=1, now=NOW
        )
        status = DatasetStatus.model_validate(
            {**status.to_wire(), **{k: v for k, v in applied.status.items() if v is not None}}
        )
    again = datasets.apply_result(
        status,
        {"digest": f"sha256:{14:064x}", "rows": 14, "valid": True},
        key="x",
        generation=2,
        now=NOW,
    )
    versions = [h["version"] for h in again.status["history"]]
    assert len(versions) == datasets.HISTORY_LIMIT
    assert len(set(versions)) == len(versions)
    assert versions[0] == f"sha256:{14:064x}"
    assert again.events == []


@pytest.mark.parametrize(
    ("error", "reason", "validated"),
    [
        (storage.ObjectNotFoundError("s3://bkt/d.csv: not found (404)"), "SourceNotFound", True),
        (storage.AccessDeniedError("s3://bkt/d.csv: access denied (SignatureDoesNotMatch)"), "AccessDenied",
         False),
        (storage.StorageError("s3://bkt/d.csv: Could not connect"), "SourceUnreachable", False),
    ],
)
def test_a_failed_check_names_the_credentials_it_used(error: storage.StorageError, reason: str,
                                                      validated: bool) -> None:
    own = datasets.source_failure(error, secret=None)
    granted = datasets.source_failure(error, secret="team-s3")
    assert "the operator's own credentials" in own.event.message
    assert "Secret team-s3" in granted.event.message
    for failure in (own, granted):
        assert [(v.type, v.status, v.reason) for v in failure.verdicts] == [
            *([("Validated", False, reason)] if validated else []), ("Ready", False, reason)]
        assert (failure.event.type, failure.event.reason) == ("Warning", reason)
        assert str(error) in failure.event.message


def test_unusable_credentials_keep_the_verdict_on_the_data() -> None:
    error = credentials.CredentialsError("Secret team-s3 has no key AWS_SECRET_ACCESS_KEY",
                                         reason=credentials.NOT_FOUND)
    failure = datasets.source_failure(error, secret="team-s3")
    assert [(v.type, v.status, v.reason, v.message) for v in failure.verdicts] == [
        ("Ready", False, "CredentialsNotFound", "Secret team-s3 has no key AWS_SECRET_ACCESS_KEY")]
    assert (failure.event.type, failure.event.reason) == ("Warning", "CredentialsNotFound")
