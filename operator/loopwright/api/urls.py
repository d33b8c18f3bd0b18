"""URLs the operator fetches for a namespace user (Prometheus checks, webhooks): what admission refuses.

Anyone who can write a Deployment or a DriftPolicy chooses a URL the operator then calls from
inside the cluster, with the operator's network position. Refused at admission (CEL, on the
literal URL) and by the models (the same, and URLs with user information):

* link-local addresses (169.254.0.0/16, fe80::/10), where the cloud metadata services answer
  (169.254.169.254, AWS' fd00:ec2::254) and hand out node credentials;
* the metadata services' names (metadata.google.internal, ...).

What the operator's allow-list and DNS add is checked when it connects
(:mod:`loopwright.core.egress`, :mod:`loopwright.operator.probes.egress`).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
              ipaddress.ip_network("fd00:ec2::254/128"))
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.internal"})
ADMISSION_RULE = (
    r"!self.matches('(?i)^https?://([^/@]*@)?(169[.]254[.]|\\[(fe[89ab][0-9a-f]:|fd00:ec2::254\\])|"
    r"metadata[.]google[.]internal([:/.]|$)|metadata([:/]|$))')",
    "link-local and cloud metadata addresses are refused",
)
"""The CEL rule on URL fields: the literal part of the refusal, enforced at admission."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refused_address(address: Address) -> str | None:
    """Why the operator must not connect to ``address``, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in LINK_LOCAL):
        return f"{address} is a link-local address (cloud metadata services answer there)"
    return None


def literal_refusal(url: str) -> str | None:
    """Why ``url`` as written must never be fetched, or None."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "only http:// and https:// URLs with a host are fetched"
    if parts.username is not None or parts.password is not None:
        return "URLs with user information are refused (use a Secret for credentials)"
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata service"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return refused_address(address)


def _check(url: str) -> str:
    if (why := literal_refusal(url)) is not None:
        raise ValueError(f"link-local and cloud metadata addresses are refused: {why}")
    return url


FetchURL = Annotated[
    str,
    Field(max_length=2048, pattern=r"^https?://",
          json_schema_extra={"x-kubernetes-validations": [
              {"rule": ADMISSION_RULE[0], "message": ADMISSION_RULE[1]}]}),
    AfterValidator(_check),
]
"""An http(s) URL the operator fetches: never a link-local or cloud metadata address."""
