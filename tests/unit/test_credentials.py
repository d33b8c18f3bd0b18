"""A Dataset's own S3 credentials: read from its Secret, refused with a reason, never echoed."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fake_api import FakeApi
from loopwright import storage
from loopwright.api.dataset import DataSource
from loopwright.operator import credentials
from loopwright.operator.controllers import dataset as controller
from loopwright.operator.runtime.client import SECRETS, ApiError

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


def _read(api: FakeApi, *, namespace: str, secret: str | None) -> storage.Credentials | None:
    return api.run(controller._source_credentials(api.context(), namespace=namespace, source=_source(secret)))


def test_without_a_reference_the_operator_uses_its_own_credentials() -> None:
    api = FakeApi()
    assert _read(api, namespace="ns", secret=None) is None
    assert api.calls == []  # no Secret is read


def test_the_secret_is_read_by_name_in_the_datasets_namespace() -> None:
    api = FakeApi()
    api.add(SECRETS, {**GOOD, "metadata": {"name": "src", "namespace": "team-a"}})
    found = _read(api, namespace="team-a", secret="src")
    assert found == storage.Credentials(access_key_id=ACCESS, secret_access_key=SECRET)
    assert api.calls == ["GET secrets/src"]


@pytest.mark.parametrize(("status", "reason"), [(403, credentials.FORBIDDEN), (None, credentials.NOT_FOUND)])
def test_a_secret_the_operator_cannot_have_is_a_credentials_error(status: int | None, reason: str) -> None:
    api = FakeApi()
    if status is not None:
        api.refuse("GET", "secrets", ApiError(status, "Forbidden", "secrets is forbidden"))
    with pytest.raises(credentials.CredentialsError) as caught:
        _read(api, namespace="team-a", secret="src")
    assert caught.value.reason == reason


def test_other_api_failures_are_not_mistaken_for_bad_credentials() -> None:
    api = FakeApi()
    api.refuse("GET", "secrets", ApiError(500, "Internal Server Error", "etcd"))
    with pytest.raises(ApiError):
        _read(api, namespace="team-a", secret="src")
