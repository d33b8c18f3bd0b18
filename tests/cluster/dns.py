"""Cluster DNS: CoreDNS with the kubernetes plugin, as kind runs it, on the bridge address.

Pods' resolv.conf points at NODE_IP:53. Only cluster.local (and reverse lookups) are served:
nothing is forwarded, so a pod cannot reach the internet by name. CoreDNS reads the API with a
client certificate of its own (user system:coredns) limited by the same ClusterRole as on kind.
"""
from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from controlplane import NODE_IP
from procs import Proc

_READY = "127.0.0.1:8181"

RBAC: list[dict[str, Any]] = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "system:coredns"},
     "rules": [
         {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
          "verbs": ["list", "watch"]},
         {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
     ]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "system:coredns"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}]},
]


def proc(*, bins: Path, state: Path) -> Proc:
    """CoreDNS serving cluster.local on NODE_IP:53 (the bridge must exist first)."""
    corefile = state / "Corefile"
    corefile.write_text(f"""\
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    ready {_READY}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {state / "coredns.kubeconfig"} loopwright
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
""")
    return Proc("coredns", [str(bins / "coredns"), "-conf", str(corefile)], ready=_ready)


def _ready() -> bool:
    # The ready plugin answers 200 once the kubernetes plugin has synced its caches.
    try:
        with urllib.request.urlopen(f"http://{_READY}/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
