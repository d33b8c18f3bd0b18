"""A Dataset's own S3 credentials: read from its Secret, refused with a reason, never echoed."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes
import pytest

from loopwright import storage
from loopwright.api.dataset import DataSource
from loopwright.operator import credentials
from loopwright.operator.controllers import _runtime
from loopwright.operator.controllers import dataset as controller

ACCESS, SECRET = "AKIAEXAMPLE", "wJalr/EXAMPLE+KEY"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _secret(**data: str) -> dict[str, Any]:
    return {"metadata": {"name": "src", "resourceVersion": "7"}, "data": data}


def _with_secret_key(encoded: str) -> dict[str, Any]:
    return _secret(AWS_ACCESS_KEY_ID=_b64(ACCESS), AWS_SECRET_ACCESS_KEY=encoded)


GOOD = _secret(AWS_ACCESS_KEY_ID=_b64(ACCESS), AWS_SECRET_ACCESS_KEY=_b64(SECRET), extra=_b64("ignored"))


def test_a_secret_with_both_keys_gives_its_key_pair() -> None:
    found = credentials.from_secret(GOOD, name="src")
    assert found == storage.Credentials(access_key_id=ACCESS, secret_access_key=SECRET)
    # A log line or traceback that shows the credentials does not show the secret.
    assert SECRET not in repr(found)
    assert ACCESS in repr(found)


@pytest.mark.parametrize(
    ("secret", "reason", "words"),
    [
        (None, credentials.NOT_FOUND, ["Secret src not found"]),
        (_secret(), credentials.NOT_FOUND, ["Secret src", "no key AWS_ACCESS_KEY_ID"]),
        (_secret(AWS_ACCESS_KEY_ID=_b64(ACCESS)), credentials.NOT_FOUND,
         ["Secret src", "no key AWS_SECRET_ACCESS_KEY"]),
        (_with_secret_key(""), credentials.INVALID, ["AWS_SECRET_ACCESS_KEY", "empty"]),
        (_with_secret_key("not base64!"), credentials.INVALID, ["AWS_SECRET_ACCESS_KEY", "base64"]),
        (_with_secret_key(base64.b64encode(b"\xff\xfe").decode()), credentials.INVALID,
         ["AWS_SECRET_ACCESS_KEY", "UTF-8"]),
        (_with_secret_key(_b64(SECRET + "\n")), credentials.INVALID, ["AWS_SECRET_ACCESS_KEY", "whitespace"]),
    ],
)
def test_unusable_secrets_say_which_secret_and_key(secret: dict[str, Any] | None, reason: str,
                                                    words: list[str]) -> None:
    with pytest.raises(credentials.CredentialsError) as caught:
        credentials.from_secret(secret, name="src")
    assert caught.value.reason == reason
    for word in words:
        assert word in str(caught.value)
    assert SECRET not in str(caught.value)


def test_forbidden_names_the_role_binding_that_would_allow_it() -> None:
    error = credentials.forbidden(name="src", namespace="team-a")
    assert error.reason == credentials.FORBIDDEN
    assert "Secret src" in str(error)
    assert "loopwright-operator-secrets" in str(error)
    assert "team-a" in str(error)


def _source(secret: str | None) -> DataSource:
    ref = {"credentialsSecretRef": {"name": secret}} if secret else {}
    return DataSource.model_validate({"uri": "s3://bkt/d.csv", **ref})


def test_without_a_reference_the_operator_uses_its_own_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    def unexpected(**_: Any) -> None:
        raise AssertionError("no Secret should be read")

    monkeypatch.setattr(_runtime, "read_secret", unexpected)
    assert controller._source_credentials(namespace="ns", source=_source(None)) is None


def test_the_secret_is_read_by_name_in_the_datasets_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[dict[str, str]] = []

    def read_secret(**where: str) -> dict[str, Any]:
        reads.append(where)
        return GOOD

    monkeypatch.setattr(_runtime, "read_secret", read_secret)
    found = controller._source_credentials(namespace="team-a", source=_source("src"))
    assert found == storage.Credentials(access_key_id=ACCESS, secret_access_key=SECRET)
    assert reads == [{"namespace": "team-a", "name": "src"}]


@pytest.mark.parametrize(("status", "reason"), [(403, credentials.FORBIDDEN), (None, credentials.NOT_FOUND)])
def test_a_secret_the_operator_cannot_have_is_a_credentials_error(
    monkeypatch: pytest.MonkeyPatch, status: int | None, reason: str,
) -> None:
    def read_secret(**_: str) -> None:
        if status is not None:
            raise kubernetes.client.ApiException(status=status, reason="Forbidden")

    monkeypatch.setattr(_runtime, "read_secret", read_secret)
    with pytest.raises(credentials.CredentialsError) as caught:
        controller._source_credentials(namespace="team-a", source=_source("src"))
    assert caught.value.reason == reason


def test_other_api_failures_are_not_mistaken_for_bad_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_secret(**_: str) -> None:
        raise kubernetes.client.ApiException(status=500, reason="Internal Server Error")

    monkeypatch.setattr(_runtime, "read_secret", read_secret)
    with pytest.raises(kubernetes.client.ApiException):
        controller._source_credentials(namespace="team-a", source=_source("src"))
