"""Which URLs the operator may fetch on a namespace user's behalf (Prometheus checks, webhooks).

Refused whatever the allow-list: what :mod:`loopwright.api.urls` refuses (link-local and cloud
metadata addresses and names, other schemes, user information). The operator-wide allow-list
(``LOOPWRIGHT_EGRESS_ALLOW``) narrows further: host names (``prometheus.monitoring.svc``), domain
suffixes (``.svc.cluster.local`` or ``*.example.com``) and networks (``10.0.0.0/8``). A name is
checked again on the addresses it resolves to, where the connection is made
(:mod:`loopwright.operator.probes.egress`), so DNS cannot smuggle a metadata address past the
name check.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from loopwright.api.urls import Address, literal_refusal, refused_address


@dataclass(frozen=True)
class Policy:
    """The operator-wide egress policy; an empty allow-list allows every address not refused."""

    allow: tuple[str, ...] = ()

    def refusal(self, url: str) -> str | None:
        """Why ``url`` must not be fetched, or None (its name is checked again once resolved)."""
        if (why := literal_refusal(url)) is not None:
            return why
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        try:
            address: Address | None = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if self.allow and not self.allows_name(host) and (
                (address is not None and not self.allows_address(address))
                or (address is None and not self.networks)):
            return f"{host} is not in the operator's egress allow-list (LOOPWRIGHT_EGRESS_ALLOW)"
        return None

    def resolved_refusal(self, host: str, address: Address) -> str | None:
        """Why a connection to ``host`` at the resolved ``address`` must not be made, or None."""
        if why := refused_address(address):
            return f"{host} resolves to {why}"
        if self.allow and not self.allows_name(host) and not self.allows_address(address):
            return f"{host} ({address}) is not in the operator's egress allow-list (LOOPWRIGHT_EGRESS_ALLOW)"
        return None

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(e, strict=False) for e in self.allow if "/" in e)

    def allows_name(self, host: str) -> bool:
        host = host.rstrip(".").lower()
        for entry in self.allow:
            if "/" in entry:
                continue
            if entry.startswith(("*.", ".")):
                if host.endswith("." + entry.lstrip("*.").lower()):
                    return True
            elif host == entry.lower():
                return True
        return False

    def allows_address(self, address: Address) -> bool:
        return any(address in net for net in self.networks)


def parse_allow(raw: str) -> tuple[str, ...]:
    """The comma-separated allow-list; raises ValueError naming the first bad entry."""
    entries = tuple(e.strip() for e in raw.split(",") if e.strip())
    for entry in entries:
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a network such as 10.0.0.0/8") from None
        elif not entry.lstrip("*.").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"{entry!r} is not a host name, a .domain suffix or a network")
    return entries
