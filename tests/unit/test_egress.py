"""Outbound URLs chosen by namespace users: what admission refuses, what the operator's policy adds."""

from __future__ import annotations

import ipaddress

import pytest

from loopwright.api.urls import literal_refusal, refused_address
from loopwright.core.egress import Policy, parse_allow


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",  # ECS task credentials
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::a9fe:a9fe]/",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./computeMetadata/v1/",
    "http://metadata/computeMetadata/v1/",
    "http://user:pw@prometheus:9090/",
    "ftp://prometheus/",
    "http:///path",
    "http://prometheus:99999/",
])
def test_refused_whatever_the_policy(url: str) -> None:
    assert literal_refusal(url) is not None
    assert Policy().refusal(url) is not None
    assert Policy(allow=("0.0.0.0/0", "::/0", "*.internal", "metadata")).refusal(url) is not None


@pytest.mark.parametrize("url", ["http://prometheus.monitoring:9090", "https://hooks.example.com/x",
                                 "http://10.96.0.10:9090/", "http://[2001:db8::1]/", "http://metadata.example.com"])
def test_fetched_without_an_allow_list(url: str) -> None:
    assert Policy().refusal(url) is None


def test_the_allow_list_narrows() -> None:
    policy = Policy(allow=parse_allow("prometheus.monitoring.svc, *.example.com, .cluster.local, 10.0.0.0/8"))
    assert policy.refusal("http://prometheus.monitoring.svc:9090") is None
    assert policy.refusal("https://hooks.example.com/x") is None
    # a suffix means subdomains; without networks in the list a name outside it is refused at once
    assert Policy(allow=("*.example.com",)).refusal("https://example.com/x") is not None
    assert policy.refusal("http://thanos.monitoring.svc.cluster.local") is None
    assert policy.refusal("http://10.1.2.3/") is None
    assert policy.refusal("http://192.168.1.1/") is not None
    # A name outside the names may still resolve into an allowed network: decided at connection.
    assert policy.refusal("http://prometheus.other") is None
    assert policy.resolved_refusal("prometheus.other", ipaddress.ip_address("10.4.0.9")) is None
    assert policy.resolved_refusal("prometheus.other", ipaddress.ip_address("192.168.0.9")) is not None
    assert Policy(allow=("hooks.example.com",)).refusal("http://prometheus.other") is not None


def test_a_resolved_metadata_address_is_refused_even_for_an_allowed_name() -> None:
    policy = Policy(allow=("hooks.example.com",))
    why = policy.resolved_refusal("hooks.example.com", ipaddress.ip_address("169.254.169.254"))
    assert why is not None
    assert "link-local" in why
    assert refused_address(ipaddress.ip_address("::ffff:169.254.1.1")) is not None
    assert refused_address(ipaddress.ip_address("10.0.0.1")) is None


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "has space", "a/b/c", "under_score.com"])
def test_a_bad_allow_list_entry_is_named(raw: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        parse_allow(raw)
