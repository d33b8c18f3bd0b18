"""Host network of the local cluster: the pod bridge, the Service address device, per-pod netns.

`python tests/cluster/network.py up|down` creates or removes the host side (idempotent); the node
agent imports the per-pod helpers and the IP pool. Every name this module creates carries a prefix
(`lw0`, `lw-svc`, netns `lw-*`, veth `lwv*`) so `down` removes exactly what the harness made and
nothing else. No forwarding or NAT is needed: pods reach the host, the Service addresses (local
addresses on `lw-svc`) and each other on the bridge without the host routing between interfaces.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

BRIDGE = "lw0"
SERVICE_DEVICE = "lw-svc"
NETWORK = ipaddress.IPv4Network("10.244.0.0/24")
GATEWAY = ipaddress.IPv4Address("10.244.0.1")
# Set, not left to the kernel: a bridge with a kernel-assigned address takes the lowest MAC of its
# ports and changes it as pods come and go, so pods' ARP entries for the gateway went stale and
# their DNS and Service traffic was dropped for up to a minute (Docker and the CNI bridge plugin
# set it for the same reason). Locally administered, 0a:58 + the IP, as OVN-Kubernetes does.
GATEWAY_MAC = "0a:58:0a:f4:00:01"
NETNS_PREFIX = "lw-"
VETH_PREFIX = "lwv"
_PEER_PREFIX = "lwp"
_ID_LENGTH = 10  # IFNAMSIZ is 16 with the NUL: "lwv" + 10 hex chars fits.


def pod_ids(uid: str) -> tuple[str, str]:
    """The netns and host-side veth names of a pod, derived from its UID so a restart finds them."""
    short = uid.replace("-", "")[:_ID_LENGTH]
    return f"{NETNS_PREFIX}{short}", f"{VETH_PREFIX}{short}"


class IpPool:
    """Pod IP assignments from the bridge subnet, keyed by pod UID, handed out round-robin.

    A released address is the last to be reused, as host-local IPAM does: the host (probes, the
    service proxy) and other pods keep a pod's MAC in their ARP tables for up to a minute, and an
    address handed straight to a new pod would be unreachable from them until that entry expired.
    The state is persisted by the caller (see `load`/`dump`) so a restarted agent keeps every
    running pod's address and never hands the same address out twice.
    """

    def __init__(self, *, network: ipaddress.IPv4Network = NETWORK,
                 reserved: frozenset[ipaddress.IPv4Address] = frozenset({GATEWAY}),
                 assigned: Mapping[str, str] | None = None, last: str | None = None) -> None:
        self._hosts = [str(host) for host in network.hosts() if host not in reserved]
        self._network = network
        self._assigned: dict[str, str] = dict(assigned or {})
        self._last = last

    @property
    def assigned(self) -> dict[str, str]:
        return dict(self._assigned)

    def allocate(self, uid: str) -> str:
        if uid in self._assigned:
            return self._assigned[uid]
        used = set(self._assigned.values())
        start = self._hosts.index(self._last) + 1 if self._last in self._hosts else 0
        for host in self._hosts[start:] + self._hosts[:start]:
            if host not in used:
                self._assigned[uid] = self._last = host
                return host
        raise RuntimeError(f"no free pod IP left in {self._network}")

    def release(self, uid: str) -> None:
        self._assigned.pop(uid, None)

    @classmethod
    def load(cls, path: Path) -> IpPool:
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            state = {}
        return cls(assigned=state.get("assigned"), last=state.get("last"))

    def dump(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"assigned": self._assigned, "last": self._last}, indent=1, sort_keys=True))
        tmp.replace(path)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def _netns_list() -> list[str]:
    out = _ip("-o", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def up() -> None:
    if not _link_exists(BRIDGE):
        _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("link", "set", BRIDGE, "address", GATEWAY_MAC)
    if str(GATEWAY) not in _ip("-o", "-4", "addr", "show", "dev", BRIDGE).stdout:
        _ip("addr", "add", f"{GATEWAY}/{NETWORK.prefixlen}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    if not _link_exists(SERVICE_DEVICE) and _ip("link", "add", SERVICE_DEVICE, "type", "dummy",
                                                check=False).returncode != 0:
        # Kernels without the dummy driver (no modules in some VMs): a bridge without ports holds
        # local addresses just as well.
        _ip("link", "add", SERVICE_DEVICE, "type", "bridge")
    _ip("link", "set", SERVICE_DEVICE, "up")


def down() -> None:
    for netns in _netns_list():
        if netns.startswith(NETNS_PREFIX):
            _ip("netns", "delete", netns, check=False)
    links = _ip("-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith((VETH_PREFIX, _PEER_PREFIX)):
            _ip("link", "delete", name, check=False)
    for device in (BRIDGE, SERVICE_DEVICE):
        if _link_exists(device):
            _ip("link", "delete", device)


def setup_pod(*, uid: str, ip: str) -> str:
    """Create the pod's netns with `eth0` on the bridge and a default route via the host; return it.

    Anything left from an earlier attempt for the same pod is removed first, so this is safe to
    call again after a crash half-way through.
    """
    netns, veth = pod_ids(uid)
    peer = _PEER_PREFIX + veth[len(VETH_PREFIX):]
    teardown_pod(uid=uid)
    _ip("netns", "add", netns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
    _ip("link", "set", peer, "netns", netns)
    _ip("link", "set", veth, "master", BRIDGE, "up")
    _ip("-n", netns, "link", "set", peer, "name", "eth0")
    _ip("-n", netns, "addr", "add", f"{ip}/{NETWORK.prefixlen}", "dev", "eth0")
    _ip("-n", netns, "link", "set", "eth0", "up")
    _ip("-n", netns, "link", "set", "lo", "up")
    _ip("-n", netns, "route", "add", "default", "via", str(GATEWAY))
    return netns


def teardown_pod(*, uid: str) -> None:
    netns, veth = pod_ids(uid)
    if netns in _netns_list():
        _ip("netns", "delete", netns, check=False)
    if _link_exists(veth):  # deleting the netns removes the pair; this covers a half-made one
        _ip("link", "delete", veth, check=False)


def add_service_address(ip: str) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):  # already there
        _ip("addr", "add", f"{ip}/32", "dev", SERVICE_DEVICE)


def remove_service_address(ip: str) -> None:
    _ip("addr", "del", f"{ip}/32", "dev", SERVICE_DEVICE, check=False)


def flush_service_addresses() -> None:
    _ip("addr", "flush", "dev", SERVICE_DEVICE, check=False)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {"up", "down"}:
        print("usage: network.py up|down", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("network.py needs root (ip link/netns)", file=sys.stderr)
        return 1
    up() if argv[0] == "up" else down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
