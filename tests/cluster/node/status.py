"""Pure pod status: the phase and conditions the kubelet would report for some container states.

The node agent keeps each container's state in the API's own shape (`{"running": {...}}` ...), so
building the status is a function of those states; the rules (kubelet's getPhase, the four pod
conditions with stable lastTransitionTime) are unit-tested here without processes or a cluster.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ContainerState:
    """One container's runtime facts, in the API's vocabulary."""

    name: str
    image: str
    init: bool = False
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str = ""

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    def to_wire(self) -> Obj:
        status: Obj = {
            "name": self.name, "image": self.image, "imageID": f"loopwright-local://{self.image}",
            "ready": self.ready, "started": self.started, "restartCount": self.restart_count,
            "state": self.state, "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def phase(*, restart_policy: str, init: Sequence[ContainerState], containers: Sequence[ContainerState],
          deleting: bool = False) -> str:
    """kubelet's getPhase, for this node's simpler life (no unknown container states)."""
    for c in init:
        if c.exit_code not in (None, 0) and restart_policy == "Never":
            return "Failed"
    if any(c.exit_code != 0 for c in init):
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for c in containers:
        if c.running:
            running += 1
        elif c.exit_code is not None:
            stopped += 1
            succeeded += c.exit_code == 0
        elif "terminated" in c.last_state:
            stopped += 1
        else:
            waiting += 1
    if waiting and not deleting:
        return "Pending"
    if running:
        return "Running"
    if deleting or restart_policy == "Never":
        return "Succeeded" if stopped == succeeded and not waiting else "Failed"
    if restart_policy == "Always":
        return "Running"
    return "Succeeded" if stopped == succeeded else "Running"


def _condition(kind: str, ok: bool, previous: Obj | None, *, reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    cond: Obj = {"type": kind, "status": status, "lastProbeTime": None}
    keep = previous is not None and previous.get("status") == status
    cond["lastTransitionTime"] = previous["lastTransitionTime"] if keep and previous else now()
    if not ok and reason:
        cond["reason"] = reason
        cond["message"] = message
    return cond


def build(pod: Obj, *, pod_ip: str, host_ip: str, start_time: str, sandbox_ready: bool,
          init: Sequence[ContainerState], containers: Sequence[ContainerState],
          deleting: bool = False, message: str = "", reason: str = "") -> Obj:
    """The pod's status subresource (a strategic merge patch body: conditions merge by type)."""
    previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    pod_phase = phase(restart_policy=pod["spec"].get("restartPolicy", "Always"), init=init,
                      containers=containers, deleting=deleting)
    incomplete = [c.name for c in init if c.exit_code != 0]
    unready = [c.name for c in containers if not c.ready]
    terminal = pod_phase in {"Succeeded", "Failed"}
    ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    ready_message = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready and not terminal,
                   previous.get("PodReadyToStartContainers")),
        _condition("Initialized", not incomplete, previous.get("Initialized"),
                   reason="ContainersNotInitialized",
                   message=f"containers with incomplete status: [{' '.join(incomplete)}]"),
        _condition("ContainersReady", not unready and not terminal, previous.get("ContainersReady"),
                   reason=ready_reason, message=ready_message),
        _condition("Ready", not unready and not terminal, previous.get("Ready"),
                   reason=ready_reason, message=ready_message),
    ]
    status: Obj = {
        "phase": pod_phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "initContainerStatuses": [c.to_wire() for c in init],
        "containerStatuses": [c.to_wire() for c in containers],
        "message": message or None,
        "reason": reason or None,
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


def same(a: Obj, b: Obj) -> bool:
    """Whether two built statuses differ only in timestamps that `build` refreshes (no patch needed)."""
    def strip(status: Obj) -> Obj:
        return {**status, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                         for c in status["conditions"]]}
    return strip(a) == strip(b)
