"""S3 credentials that a resource names through a Secret of its own namespace.

A Dataset with ``spec.source.credentialsSecretRef`` is checked with the key pair its owner put
in that Secret, as Flux's source-controller does with a Bucket's ``secretRef``: the operator's
own keys may reach buckets the owner was never granted, or miss the one the owner was. The
reference has a name and no namespace, so a resource can only name a Secret beside it.

The operator reads such a Secret by name only (RBAC ``get`` through the opt-in ClusterRole
``loopwright-operator-secrets``; no ``list`` or ``watch``), so a Secret created or fixed later is
noticed at the next refresh. Errors name the Secret and the key, never a value: they end up in
status conditions and Events, which anyone who may read the resource can see.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from loopwright import storage
from loopwright.api import reasons
from loopwright.operator.builders.common import ACCESS_KEY, SECRET_KEY

NOT_FOUND = reasons.CREDENTIALS_NOT_FOUND
INVALID = reasons.CREDENTIALS_INVALID
FORBIDDEN = reasons.CREDENTIALS_FORBIDDEN
CredentialsError = storage.CredentialsError
READER_ROLE = "loopwright-operator-secrets"
"""The ClusterRole that a RoleBinding in a namespace grants to let the operator read its Secrets."""




def from_secret(secret: Mapping[str, Any] | None, *, name: str) -> storage.Credentials:
    """The key pair in a Secret as the API returns it (``data`` base64-encoded); None: no such Secret."""
    if secret is None:
        raise CredentialsError(f"Secret {name} not found in this namespace (it must hold {ACCESS_KEY} "
                               f"and {SECRET_KEY})", reason=NOT_FOUND)
    data = secret.get("data") or {}
    return storage.Credentials(access_key_id=_value(data, key=ACCESS_KEY, secret=name),
                               secret_access_key=_value(data, key=SECRET_KEY, secret=name))


def forbidden(*, name: str, namespace: str) -> CredentialsError:
    """The error for a Secret the operator may not read: says which RoleBinding would allow it."""
    return CredentialsError(
        f"the operator may not read Secret {name}: bind ClusterRole {READER_ROLE} to the operator's "
        f"ServiceAccount with a RoleBinding in namespace {namespace}", reason=FORBIDDEN)


def _value(data: Mapping[str, Any], *, key: str, secret: str) -> str:
    """One decoded value, refusing what S3 would refuse anyway, with a message that says why.

    Surrounding whitespace (typically the newline of a ``--from-file``) is refused rather than
    stripped: the profiling Job receives the value unchanged through ``secretKeyRef``, so the
    check must see what the Job would see.
    """
    raw = data.get(key)
    if raw is None:
        raise CredentialsError(f"Secret {secret} has no key {key}", reason=NOT_FOUND)
    try:
        value = base64.b64decode(str(raw), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        # ``from None``: a UnicodeDecodeError carries the bytes, which must not reach a traceback.
        raise CredentialsError(f"key {key} of Secret {secret} is not base64-encoded UTF-8 text",
                               reason=INVALID) from None
    if not value:
        raise CredentialsError(f"key {key} of Secret {secret} is empty", reason=INVALID)
    if value != value.strip():
        raise CredentialsError(f"key {key} of Secret {secret} has leading or trailing whitespace "
                               "(a newline from a file?)", reason=INVALID)
    return value
