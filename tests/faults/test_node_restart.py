"""Case 4: the kind node restarts (`docker restart` of its container) while a client on the host
predicts through a NodePort: everything comes back by itself. Figures: seconds until the API
answers, the node is Ready and the predictor answers again; the requests that failed meanwhile.

Marked heavy: the whole cluster goes down, so `make test` leaves it to `make faults`.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from e2e import deployment_support as lw
from faults.node import Node, api_answers, cluster_name, docker, node_address, reconnect
from faults.traffic import HostLoop

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.heavy, pytest.mark.timeout(900)]

MODEL = "eta"


def _node_ready(kube: Any) -> bool:
    try:
        (node,) = kube.core.list_node(_request_timeout=5).items
    except Exception:  # the API is not back yet
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_node_restart_under_traffic(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    lw.register(kube, s3, namespace, model=MODEL, version=1, kind="good")
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment(
        MODEL, model=MODEL, rollout={"steps": [{"weight": 50, "pause": "5s"}]}))
    lw.wait_serving(kube, namespace, MODEL, timeout=180)
    service = kube.core.create_namespaced_service(namespace, {
        "metadata": {"name": f"{MODEL}-nodeport"},
        "spec": {"type": "NodePort", "selector": {"loopwright.dev/deployment": MODEL},
                 "ports": [{"port": 80, "targetPort": 8080}]}})
    node = Node.of_cluster()
    address = f"{node_address(node)}:{service.spec.ports[0].node_port}"
    traffic = HostLoop(address, model=MODEL)
    kube.wait(lambda: any(r == "ok" for _, r in traffic.results[-5:]), timeout=60,
              what="the host client answered through the NodePort")

    start = time.monotonic()
    docker("restart", node.name, timeout=300)
    restarted = time.monotonic() - start
    reconnect(kube, cluster_name())
    kube.wait(lambda: api_answers(kube), timeout=300, what="the API server after the restart", interval=1)
    api = time.monotonic() - start
    kube.wait(lambda: _node_ready(kube), timeout=300, what="the node Ready", interval=1)
    ready = time.monotonic() - start

    def answering_again() -> bool:
        recent = [r for t, r in traffic.results if t > start + restarted]
        return len(recent) >= 20 and all(r == "ok" for r in recent[-20:])

    kube.wait(answering_again, timeout=400, what="the predictor answering again", interval=1)
    results = list(traffic.results)
    first_failure = next((t for t, r in results if t >= start and r != "ok"), start)
    back = next(t for t, r in results if t > start + restarted and r == "ok")
    outcomes = Counter(r for t, r in results if t >= start)
    figures.record("node restart: seconds for docker restart", f"{restarted:.1f}")
    figures.record("node restart: seconds until the API answers / the node is Ready",
                   f"{api:.1f} / {ready:.1f}")
    figures.record("node restart: seconds until the predictor answers again", f"{back - start:.1f}")
    figures.record("node restart: seconds without answers (first failure to first answer)",
                   f"{back - first_failure:.1f}")
    failed = sum(n for r, n in outcomes.items() if r != "ok")
    kinds = ", ".join(f"{r} {n}" for r, n in sorted(outcomes.items()) if r != "ok")
    figures.record("node restart: failed requests (host client, 2 s timeout)",
                   f"{failed}/{sum(outcomes.values())} ({kinds})")

    # The operator came back on its own and still converges: a new version goes through the canary
    # (the client keeps sending: the analysis needs requests).
    operator.pod()
    lw.register(kube, s3, namespace, model=MODEL, version=2, kind="good")
    start = time.monotonic()
    kube.wait(lambda: ((lw.get(kube, namespace, "deployments", MODEL)["status"].get("stable") or {})
                       .get("version") == 2), timeout=300, what="version 2 promoted", interval=1)
    figures.record("after the restart: seconds to promote a new version (one 5 s step)",
                   f"{time.monotonic() - start:.1f}")
    after = [r for t, r in traffic.stop() if t > start]
    assert after.count("ok") == len(after), Counter(after)
