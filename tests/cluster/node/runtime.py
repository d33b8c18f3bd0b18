"""Running pods as local processes: one worker per pod, driven by the latest pod object.

A `PodWorker` owns everything of one pod on this node: its sandbox (network namespace, pod IP,
resolv.conf, hosts, volume directories), its container processes, probes and status. It reacts to
the current pod object rather than to an event history: a deletionTimestamp or the pod's
disappearance at any moment cancels whatever the lifecycle is doing and the processes that exist
are stopped (SIGTERM, grace period, SIGKILL) before the final DELETE. The status subresource is
recomputed from the container states whenever they change.

Each container runs under its own monitor process (node/monitor.py) that captures its output and
records how it ended, and the agent keeps a small record per container in the state directory:
a new agent adopts running containers from those records instead of starting them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import network

from node import spec as podspec
from node import status as podstatus
from node.api import Api, ApiError
from node.logs import LogSource
from node.status import ContainerState

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
LAUNCHER = Path(__file__).with_name("launch.sh")
MONITOR = Path(__file__).with_name("monitor.py")
_CONFIG_RETRY_SECONDS = 2.0
_MAX_BACKOFF_SECONDS = 300
_BACKOFF_RESET_SECONDS = 600
_TOKEN_CHECK_SECONDS = 60
_SANDBOX_CHECK_SECONDS = 2
_EXIT_POLL_SECONDS = 0.2
_PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
                   "successThreshold": 1, "failureThreshold": 3}


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks: together with the PID it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@functools.cache
def _tool(name: str) -> str:
    """A host tool's absolute path: containers run with their own PATH, which may not have it."""
    return shutil.which(name, path=podspec.SYSTEM_PATH) or name


def _read(path: str) -> str:
    return Path(path).read_text()


def _traversable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o001)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_rss(pgids: Iterable[int]) -> dict[int, int]:
    """Resident bytes per process group, summed over the groups' processes (one /proc scan)."""
    wanted = set(pgids)
    page = os.sysconf("SC_PAGE_SIZE")
    totals = dict.fromkeys(wanted, 0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pgrp = int(fields[2])
        if pgrp in wanted:
            totals[pgrp] += int(fields[21]) * page
    return totals


def backoff_seconds(crashes: int) -> float:
    """Restart delay after the n-th consecutive crash: immediately once, then 10 s doubling to 5 min."""
    if crashes <= 1:
        return 0
    return float(min(10 * 2 ** (crashes - 2), _MAX_BACKOFF_SECONDS))


def _probe(raw: Obj | None) -> Obj | None:
    return None if raw is None else {**_PROBE_DEFAULTS, **raw}


@dataclass
class Runtime:
    """What all pod workers share: API access, node facts, the IP pool and the state directory."""

    api: Api
    node_name: str
    node_ip: str
    dns: str
    state_dir: Path
    venv_bin: Path
    allocatable: dict[str, str]
    pool: network.IpPool = field(init=False)
    interpreter: Path = field(init=False)
    project: Path = field(init=False)
    workers: dict[str, PodWorker] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)  # fire-and-forget API calls

    def __post_init__(self) -> None:
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        self.pool = network.IpPool.load(self.ipam_path)
        # The installation the venv's python runs from (bin/python3.x -> <prefix>/bin/python3.x).
        self.interpreter = Path(os.path.realpath(self.venv_bin / "python")).parents[1]
        # The checkout the venv's editable install points into (<checkout>/.venv/bin).
        self.project = self.venv_bin.parents[1]

    @property
    def ipam_path(self) -> Path:
        return self.state_dir / "ipam.json"

    def allocate_ip(self, uid: str) -> str:
        ip = self.pool.allocate(uid)
        self.pool.dump(self.ipam_path)
        return ip

    def release_ip(self, uid: str) -> None:
        self.pool.release(uid)
        self.pool.dump(self.ipam_path)

    def probe_session(self) -> aiohttp.ClientSession:
        if self.http is None:
            self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False, force_close=True))
        return self.http

    def forget_pod(self, uid: str) -> None:
        """Remove what a pod that no longer exists left behind (deleted while no agent ran)."""
        for record in (self.state_dir / "pods" / uid / "containers").glob("*.json"):
            proc = _Proc.load(record)
            if proc is not None and proc.alive():
                logger.info("stopping process group %s of a pod that is gone", proc.pid)
                _killpg(proc.pid, signal.SIGKILL)
        network.teardown_pod(uid=uid)
        self.release_ip(uid)
        shutil.rmtree(self.state_dir / "pods" / uid, ignore_errors=True)

    async def watch_memory(self) -> None:
        """Kill containers whose resident memory passes their limit, reported as OOMKilled.

        A poll instead of a memory cgroup: it is coarse (one second) but needs nothing from the
        host's cgroup setup and never moves processes out of the agent's own cgroup.
        """
        while True:
            await asyncio.sleep(1)
            limited = [p for w in self.workers.values() for p in w.procs.values()
                       if p.memory_limit and p.running]
            if not limited:
                continue
            usage = await asyncio.to_thread(group_rss, [p.pid for p in limited])
            for proc in limited:
                if usage.get(proc.pid, 0) > proc.memory_limit:
                    logger.info("container %s over its memory limit: killed", proc.name)
                    proc.oom_killed = True
                    _killpg(proc.pid, signal.SIGKILL)


@dataclass
class _Proc:
    """A started container: its process group and the monitor that reports how it ended.

    The monitor (node/monitor.py) is the container's parent and writes its exit record to
    `exit_file`, so a container started by an earlier agent is waited for the same way.
    """

    name: str
    pid: int  # the container's process group
    ticks: int | None
    monitor_pid: int
    monitor_ticks: int | None
    exit_file: Path
    record: Path
    restart_count: int
    container_id: str
    started_at: str
    memory_limit: int
    monitor: asyncio.subprocess.Process | None = None  # None when adopted from an earlier agent
    oom_killed: bool = False

    @property
    def running(self) -> bool:
        return not self.exit_file.exists()

    def alive(self) -> bool:
        return _proc_start_ticks(self.pid) == self.ticks

    def _monitor_gone(self) -> bool:
        if self.monitor is not None:
            return self.monitor.returncode is not None
        return _proc_start_ticks(self.monitor_pid) != self.monitor_ticks

    async def wait(self) -> Obj:
        """The exit record ({"exitCode", "signal", "finishedAt"}) once the container ended."""
        while True:
            if self.exit_file.exists():
                if self.monitor is not None:
                    await self.monitor.wait()
                result: Obj = json.loads(self.exit_file.read_text())
                return result
            if self._monitor_gone() and not self.exit_file.exists():
                return {"exitCode": 137, "signal": None, "finishedAt": podstatus.now(),
                        "lost": "the container's monitor ended without reporting how the container did"}
            await asyncio.sleep(_EXIT_POLL_SECONDS)

    def save(self) -> None:
        self.record.write_text(json.dumps({
            "name": self.name, "pid": self.pid, "ticks": self.ticks, "monitorPid": self.monitor_pid,
            "monitorTicks": self.monitor_ticks, "exitFile": str(self.exit_file),
            "restartCount": self.restart_count, "containerID": self.container_id,
            "startedAt": self.started_at, "memoryLimit": self.memory_limit}))

    @classmethod
    def load(cls, record: Path) -> _Proc | None:
        try:
            raw = json.loads(record.read_text())
        except (OSError, ValueError):
            return None
        return cls(name=raw["name"], pid=raw["pid"], ticks=raw["ticks"], monitor_pid=raw["monitorPid"],
                   monitor_ticks=raw["monitorTicks"], exit_file=Path(raw["exitFile"]), record=record,
                   restart_count=raw["restartCount"], container_id=raw["containerID"],
                   started_at=raw["startedAt"], memory_limit=raw["memoryLimit"])

    def discard(self) -> None:
        for path in (self.record, self.exit_file, self.exit_file.with_name(self.exit_file.name + ".pid")):
            path.unlink(missing_ok=True)


@dataclass
class _Prepared:
    argv: list[str]
    env: dict[str, str]
    workdir: str
    mounts: list[tuple[str, str, str]]
    privileges: list[str]


class PodWorker:
    def __init__(self, runtime: Runtime, pod: Obj) -> None:
        self.rt = runtime
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.dir: Path = runtime.state_dir / "pods" / self.uid
        self.procs: dict[str, _Proc] = {}
        self.pod_ip = ""
        self.sandbox_ready = False
        self.deleting = False
        self.gone = False
        self.changed = asyncio.Event()
        self.dirty = asyncio.Event()
        self.finished = asyncio.Event()
        status = pod.get("status") or {}
        self.start_time: str = status.get("startTime") or podstatus.now()
        self.terminal = status.get("phase") in {"Succeeded", "Failed"}
        self._adopted_terminal = self.terminal  # finished before this worker: nothing left to report
        self.init = self._states(pod["spec"].get("initContainers", []), status.get("initContainerStatuses"),
                                 init=True)
        self.containers = self._states(pod["spec"]["containers"], status.get("containerStatuses"), init=False)
        self._adopted: dict[str, _Proc] = {}
        if not self.terminal:
            self._restore()
        self._crashes: dict[str, int] = {}
        self._sandbox_op: asyncio.Task[str] | None = None
        self._tokens: dict[str, tuple[str, float, float]] = {}
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spec(self) -> Obj:
        return self.pod["spec"]  # type: ignore[no-any-return]

    @staticmethod
    def _states(specs: list[Obj], previous: list[Obj] | None, *, init: bool) -> list[ContainerState]:
        """Container states, continuing what the API shows (restart counts survive agent restarts)."""
        before = {c["name"]: c for c in previous or []}
        states = []
        for c in specs:
            cs = ContainerState(name=c["name"], image=c.get("image", ""), init=init)
            if old := before.get(c["name"]):
                cs.restart_count = old.get("restartCount", 0)
                cs.last_state = old.get("lastState") or {}
                cs.container_id = old.get("containerID", "")
                state = old.get("state") or {}
                if "terminated" in state or "running" in state:
                    cs.state = state
            states.append(cs)
        return states

    def _restore(self) -> None:
        """Adopt the containers an earlier agent started; a container the API shows running but
        that left no trace here is reported lost (its exit is unknowable) and restarted by policy."""
        for cs in [*self.init, *self.containers]:
            proc = _Proc.load(self.dir / "containers" / f"{cs.name}.json")
            if proc is not None and (proc.alive() or not proc.running):
                logger.info("pod %s: adopting container %s (pid %d)", self.key, cs.name, proc.pid)
                cs.restart_count = proc.restart_count
                cs.container_id = proc.container_id
                cs.state = {"running": {"startedAt": proc.started_at}}
                cs.started = cs.ready = False
                self.procs[cs.name] = self._adopted[cs.name] = proc
            elif "running" in cs.state:
                cs.state = {"terminated": {
                    "exitCode": 137, "reason": "ContainerStatusUnknown",
                    "startedAt": cs.state["running"].get("startedAt"), "finishedAt": podstatus.now(),
                    "message": "The container could not be located when the node agent restarted"}}

    # ----------------------------------------------------------------------------- desired state

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.changed.set()

    def vanish(self) -> None:
        self.gone = True
        self.changed.set()

    async def _deletion_requested(self) -> None:
        while not (self.gone or self.pod["metadata"].get("deletionTimestamp")):
            self.changed.clear()
            await self.changed.wait()

    def _grace(self) -> float:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.spec.get("terminationGracePeriodSeconds", 30)
        return float(grace) if not self.gone else min(float(grace), 2.0)

    async def _run(self) -> None:
        status_task = asyncio.create_task(self._sync_status())
        deletion = asyncio.create_task(self._deletion_requested())
        life = asyncio.create_task(self._lifecycle())
        try:
            await asyncio.wait({life, deletion}, return_when=asyncio.FIRST_COMPLETED)
            if life.done():
                if exc := life.exception():
                    logger.error("pod %s lifecycle failed: %r", self.key, exc)
                self.terminal = True
                await self._teardown_sandbox()
                self.dirty.set()
                await deletion
            life.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await life
            self.deleting = True
            for name in self.procs:
                self.event(name, "Killing", f"Stopping container {name}")
            await self.stop(self._grace())
            status_task.cancel()  # a patch still in flight must not land after the final one
            with contextlib.suppress(asyncio.CancelledError):
                await status_task
            await self._flush_status()
            await self._teardown_sandbox()
            shutil.rmtree(self.dir, ignore_errors=True)
            if not self.gone:
                await self._final_delete()
        finally:
            for task in (status_task, deletion, life):
                task.cancel()
            self.finished.set()
            self.rt.workers.pop(self.uid, None)

    def event(self, container: str, reason: str, message: str, *, warning: bool = False) -> None:
        """Record a kubelet-style Event on the pod (what `kubectl describe pod` lists); best effort."""
        index = next((f"spec.initContainers{{{container}}}" for c in self.init if c.name == container),
                     f"spec.containers{{{container}}}")
        at = podstatus.now()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": self.namespace,
                               "name": self.name, "uid": self.uid, "fieldPath": index},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self.rt.node_name},
            "reportingComponent": "kubelet", "reportingInstance": self.rt.node_name,
            "firstTimestamp": at, "lastTimestamp": at, "count": 1,
        }
        task = asyncio.create_task(self._post_event(body))
        self.rt.background.add(task)
        task.add_done_callback(self.rt.background.discard)

    async def _post_event(self, body: Obj) -> None:
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            await self.rt.api.request("POST", f"/api/v1/namespaces/{self.namespace}/events", body=body)

    async def _final_delete(self) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        try:
            await self.rt.api.request("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                                      body=body)
        except ApiError as e:
            if e.status not in (404, 409):
                logger.warning("final delete of %s failed: %s", self.key, e)

    # ------------------------------------------------------------------------------------ status

    async def _sync_status(self) -> None:
        last: Obj | None = None
        while True:
            await self.dirty.wait()
            await asyncio.sleep(0.1)  # let a burst of changes land in one patch
            self.dirty.clear()
            last = await self._push_status(last)

    async def _flush_status(self) -> None:
        if not self._adopted_terminal:
            await self._push_status(None)

    async def _push_status(self, last: Obj | None) -> Obj | None:
        if self.gone or self._adopted_terminal:
            return last
        built = podstatus.build(self.pod, pod_ip=self.pod_ip, host_ip=self.rt.node_ip,
                                start_time=self.start_time, sandbox_ready=self.sandbox_ready,
                                init=self.init, containers=self.containers, deleting=self.deleting)
        if last is not None and podstatus.same(built, last):
            return last
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        try:
            self.pod = await self.rt.api.patch(path, {"status": built}, strategic=True)
        except ApiError as e:
            if e.status != 404:
                logger.warning("status of %s not written: %s", self.key, e)
                self.dirty.set()
                await asyncio.sleep(1)
            return last
        except aiohttp.ClientError as e:
            logger.warning("status of %s not written: %s", self.key, e)
            self.dirty.set()
            await asyncio.sleep(1)
            return last
        return built

    # --------------------------------------------------------------------------------- lifecycle

    async def _lifecycle(self) -> None:
        if self.terminal:
            return
        await self._setup_sandbox()
        helpers = [asyncio.create_task(self._refresh_tokens()), asyncio.create_task(self._guard_sandbox())]
        try:
            specs = self.spec.get("initContainers", [])
            for cs, spec in zip(self.init, specs, strict=True):
                await self._supervise(cs, spec, init=True)
                if cs.exit_code != 0:
                    return
            pairs = zip(self.containers, self.spec["containers"], strict=True)
            await asyncio.gather(*(self._supervise(cs, spec, init=False) for cs, spec in pairs))
        finally:
            for helper in helpers:
                helper.cancel()

    def _should_restart(self, exit_code: int, *, init: bool) -> bool:
        policy = self.spec.get("restartPolicy", "Always")
        if init:
            return exit_code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    async def _supervise(self, cs: ContainerState, spec: Obj, *, init: bool) -> None:
        """Run one container for as long as its restart policy says, with crash back-off."""
        if init and cs.exit_code == 0:
            return
        if (adopted := self._adopted.pop(cs.name, None)) is not None:
            await self._run_container(cs, spec, adopted=adopted)
        while True:
            if (exit_code := cs.exit_code) is not None:
                if not self._should_restart(exit_code, init=init):
                    return
                terminated = cs.state["terminated"]
                cs.last_state = {"terminated": terminated}
                crashes = self._crashes.get(cs.name, 0) + 1
                self._crashes[cs.name] = crashes
                delay = backoff_seconds(crashes)
                if delay:
                    reason = ("ExecutableNotFound" if terminated.get("reason") == "ExecutableNotFound"
                              else "CrashLoopBackOff")
                    message = (f"back-off {delay:.0f}s restarting failed container={cs.name} "
                               f"pod={self.name}_{self.namespace}({self.uid})")
                    cs.state = {"waiting": {"reason": reason, "message": message}}
                    self.event(cs.name, "BackOff", "Back-off restarting failed container", warning=True)
                    self.dirty.set()
                    await asyncio.sleep(delay)
                cs.restart_count += 1
            await self._run_container(cs, spec)

    async def _run_container(self, cs: ContainerState, spec: Obj, *, adopted: _Proc | None = None) -> None:
        if adopted is not None:
            await self._watch_container(cs, spec, adopted, ran_since=time.monotonic())
            return
        while True:
            try:
                prepared = await self._prepare(spec)
                break
            except podspec.ConfigError as e:
                if cs.state.get("waiting", {}).get("message") != e.message:
                    self.event(cs.name, "Failed", f"Error: {e.message}", warning=True)
                cs.state = {"waiting": {"reason": e.reason, "message": e.message}}
                self.dirty.set()
                await asyncio.sleep(_CONFIG_RETRY_SECONDS)
        executable = podspec.find_executable(prepared.argv[0], path=prepared.env["PATH"],
                                             workdir=prepared.workdir)
        if executable is None:
            at = podstatus.now()
            cs.state = {"terminated": {
                "exitCode": 127, "reason": "ExecutableNotFound", "startedAt": at, "finishedAt": at,
                "message": f'executable "{prepared.argv[0]}" not found in $PATH '
                           f'({prepared.env["PATH"]}) for image {spec.get("image")!r}'}}
            self.event(cs.name, "Failed", cs.state["terminated"]["message"], warning=True)
            self.dirty.set()
            return
        ran_since = time.monotonic()
        proc = await self._spawn(cs, spec, prepared)
        if proc is None:
            return
        cs.container_id = proc.container_id
        cs.state = {"running": {"startedAt": proc.started_at}}
        self.event(cs.name, "Started", f"Started container {cs.name}")
        await self._watch_container(cs, spec, proc, ran_since=ran_since)

    async def _watch_container(self, cs: ContainerState, spec: Obj, proc: _Proc, *, ran_since: float) -> None:
        """Probe the container until it ends, then record how it ended."""
        cs.started = spec.get("startupProbe") is None
        cs.ready = spec.get("readinessProbe") is None and not cs.init
        self.dirty.set()
        probes = asyncio.create_task(self._probe_all(cs, spec, proc))
        try:
            result = await proc.wait()
        finally:
            probes.cancel()
        if time.monotonic() - ran_since > _BACKOFF_RESET_SECONDS:
            self._crashes.pop(cs.name, None)
        self._record_exit(cs, spec, proc, result)

    def _record_exit(self, cs: ContainerState, spec: Obj, proc: _Proc, result: Obj) -> None:
        self.procs.pop(cs.name, None)
        proc.discard()
        exit_code = int(result["exitCode"])
        if result.get("lost"):
            reason = "ContainerStatusUnknown"
        else:
            reason = "OOMKilled" if proc.oom_killed else "Completed" if exit_code == 0 else "Error"
        terminated: Obj = {"exitCode": exit_code, "reason": reason, "startedAt": proc.started_at,
                           "finishedAt": result["finishedAt"], "containerID": cs.container_id}
        if result.get("signal"):
            terminated["signal"] = result["signal"]
        if message := result.get("lost") or self._termination_message(cs, spec, exit_code):
            terminated["message"] = message
        cs.state = {"terminated": terminated}
        cs.ready = False
        cs.started = False
        self.dirty.set()

    def _termination_message(self, cs: ContainerState, spec: Obj, exit_code: int) -> str:
        path = self.dir / "termination" / cs.name
        with contextlib.suppress(OSError):
            message = path.read_bytes()[:4096].decode(errors="replace")
            if message:
                return message
        if spec.get("terminationMessagePolicy") == "FallbackToLogsOnError" and exit_code != 0:
            log = self.log_path(cs.name, cs.restart_count)
            with contextlib.suppress(OSError):
                lines = log.read_bytes().splitlines()[-80:]
                text = b"\n".join(line.split(b" ", 3)[-1] for line in lines)
                return text[-2048:].decode(errors="replace")
        return ""

    def log_path(self, container: str, restart_count: int) -> Path:
        return self.dir / "logs" / container / f"{restart_count}.log"

    def log_source(self, container: str, *, previous: bool) -> LogSource | None:
        cs = next((c for c in [*self.init, *self.containers] if c.name == container), None)
        if cs is None:
            return None
        count = cs.restart_count - 1 if previous else cs.restart_count
        if count < 0:
            return None
        path = self.log_path(container, count)
        waiting = "" if previous else cs.state.get("waiting", {}).get("reason", "")
        return LogSource(path=path, active=lambda: not previous and container in self.procs
                         and cs.restart_count == count, waiting=waiting)

    # ----------------------------------------------------------------------------------- sandbox

    @property
    def host_network(self) -> bool:
        return bool(self.spec.get("hostNetwork"))

    async def _setup_sandbox(self) -> None:
        # Before the volumes: the downward API may show the IP.
        self.pod_ip = self.rt.node_ip if self.host_network else self.rt.allocate_ip(self.uid)
        while True:
            try:
                await self._write_volumes(refresh=False)
                break
            except podspec.ConfigError as e:
                for cs in [*self.init, *self.containers]:
                    cs.state = {"waiting": {"reason": "ContainerCreating", "message": e.message}}
                self.dirty.set()
                await asyncio.sleep(_CONFIG_RETRY_SECONDS)
        for cs in [*self.init, *self.containers]:
            if "waiting" in cs.state:
                cs.state = {"waiting": {"reason": "PodInitializing" if not cs.init and self.init
                                        else "ContainerCreating"}}
        _, veth = network.pod_ids(self.uid)
        keep = self.host_network or (self._adopted and Path("/sys/class/net", veth).exists())
        if not keep:  # adopted containers live in the existing namespace
            setup = asyncio.to_thread(network.setup_pod, uid=self.uid, ip=self.pod_ip)
            self._sandbox_op = asyncio.create_task(setup)
            await asyncio.shield(self._sandbox_op)
        (self.dir / "resolv.conf").write_text(podspec.resolv_conf(namespace=self.namespace,
                                                                  nameserver=self.rt.dns))
        (self.dir / "hosts").write_text(podspec.etc_hosts(pod_ip=self.pod_ip, hostname=self._hostname()))
        self.sandbox_ready = True
        self.dirty.set()

    async def _guard_sandbox(self) -> None:
        """Rebuild the pod's network if something removed it (a stray `network.py down`).

        Processes left in a namespace without eth0 can never be reached again, so like the kubelet
        after a sandbox loss the agent makes a new sandbox (same IP) and kills the containers; the
        restart policy then starts them in the new one.
        """
        _, veth = network.pod_ids(self.uid)
        while not self.host_network:
            await asyncio.sleep(_SANDBOX_CHECK_SECONDS)
            if Path("/sys/class/net", veth).exists():
                continue
            logger.warning("pod %s lost its network namespace: recreating it", self.key)
            try:
                await asyncio.to_thread(network.setup_pod, uid=self.uid, ip=self.pod_ip)
            except subprocess.CalledProcessError as e:  # no bridge (yet): try again later
                logger.warning("pod %s: network not recreated: %s", self.key, e.stderr)
                continue
            for proc in list(self.procs.values()):
                _killpg(proc.pid, signal.SIGKILL)

    async def _teardown_sandbox(self) -> None:
        if self._sandbox_op is not None:
            with contextlib.suppress(Exception):
                await self._sandbox_op
            self._sandbox_op = None
        if (self.pod_ip or self.sandbox_ready) and not self.host_network:
            await asyncio.to_thread(network.teardown_pod, uid=self.uid)
            self.rt.release_ip(self.uid)
        self.sandbox_ready = False

    async def _fetch(self, kind: str, names: Iterable[str]) -> dict[str, Obj | None]:
        found: dict[str, Obj | None] = {}
        for name in names:
            found[name] = await self.rt.api.get_or_none(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        return found

    async def _token(self, source: Obj) -> str:
        """A service-account token bound to this pod (TokenRequest), reused until 80% of its life."""
        audience = source.get("audience") or ""
        ttl = int(source.get("expirationSeconds", 3600))
        cached = self._tokens.get(source["path"])
        if cached and time.monotonic() < cached[1] + 0.8 * cached[2]:
            return cached[0]
        account = self.spec.get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "audiences": [audience] if audience else None, "expirationSeconds": ttl,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}}}
        try:
            issued = await self.rt.api.request(
                "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token", body=body)
        except ApiError as e:
            raise podspec.ConfigError("FailedMount", f"token for service account {account!r}: {e}") from e
        token: str = issued["status"]["token"]
        self._tokens[source["path"]] = (token, time.monotonic(), float(ttl))
        return token

    def _context(self) -> podspec.PodContext:
        return podspec.PodContext(pod=self.pod, pod_ip=self.pod_ip, host_ip=self.rt.node_ip,
                                  node_allocatable=self.rt.allocatable)

    async def _write_volumes(self, *, refresh: bool) -> None:
        """Create every volume's directory and content; `refresh` rewrites only token volumes."""
        configmaps, secrets = podspec.referenced_names(self.pod)
        cms, secs = await self._fetch("configmaps", configmaps), await self._fetch("secrets", secrets)
        for volume in self.spec.get("volumes", []):
            root = self.dir / "volumes" / volume["name"]
            sources = podspec.token_sources(volume)
            if refresh and not sources:
                continue
            tokens = {s["path"]: await self._token(s) for s in sources}
            files = podspec.volume_files(self._context(), volume, configmaps=cms, secrets=secs, tokens=tokens)
            if files is None:
                if "emptyDir" in volume:
                    root.mkdir(parents=True, exist_ok=True)
                    root.chmod(0o777)
                elif "hostPath" not in volume:
                    kind = next(k for k in volume if k != "name")
                    message = f"volume {volume['name']!r}: {kind} is not supported on this node"
                    raise podspec.ConfigError("FailedMount", message)
                continue
            root.mkdir(parents=True, exist_ok=True)
            for f in files:
                target = root / f.path
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp")
                tmp.write_bytes(f.data)
                tmp.chmod(f.mode)
                tmp.replace(target)

    async def _refresh_tokens(self) -> None:
        while True:
            await asyncio.sleep(_TOKEN_CHECK_SECONDS)
            try:
                await self._write_volumes(refresh=True)
            except (podspec.ConfigError, ApiError, aiohttp.ClientError) as e:
                logger.warning("token refresh for %s failed: %s", self.key, e)

    # -------------------------------------------------------------------------------- containers

    def _hostname(self) -> str:
        if self.host_network:
            return socket.gethostname()
        return str(self.spec.get("hostname") or self.name)[:63]

    def _security(self, spec: Obj) -> tuple[int | None, int | None, int | None, bool]:
        pod_ctx = self.spec.get("securityContext") or {}
        ctx = {**pod_ctx, **(spec.get("securityContext") or {})}
        non_root = bool(ctx.get("runAsNonRoot"))
        return ctx.get("runAsUser"), ctx.get("runAsGroup"), pod_ctx.get("fsGroup"), non_root

    async def _prepare(self, spec: Obj) -> _Prepared:
        configmaps, secrets = podspec.referenced_names(self.pod)
        cms, secs = await self._fetch("configmaps", configmaps), await self._fetch("secrets", secrets)
        services = (await self.rt.api.get(f"/api/v1/namespaces/{self.namespace}/services"))["items"]
        if self.namespace != podspec.MASTER_NAMESPACE:
            master = await self.rt.api.get_or_none("/api/v1/namespaces/default/services/kubernetes")
            services += [master] if master else []
        links = podspec.service_env(services, namespace=self.namespace,
                                    enable_links=self.spec.get("enableServiceLinks", True))
        user, group, fs_group, non_root = self._security(spec)
        if non_root and not user:
            raise podspec.ConfigError("CreateContainerConfigError",
                                      "container has runAsNonRoot and image will run as root")
        base = {"PATH": podspec.image_path(spec.get("image", ""), venv_bin=self.rt.venv_bin),
                "HOSTNAME": self._hostname(), "HOME": "/root" if not user else "/"}
        env = podspec.container_env(self._context(), spec, services_env=links, configmaps=cms,
                                    secrets=secs, base=base)
        argv = podspec.container_argv(spec, env)
        privileges: list[str] = []
        if user is not None or group is not None:
            privileges = [f"--reuid={user or 0}", f"--regid={group or 0}"]
            privileges.append(f"--groups={fs_group}" if fs_group is not None else "--clear-groups")
        image = spec.get("image", "")
        image_mounts = podspec.hidden_path_mounts(image, user=user, traversable=_traversable,
                                                  paths=[self.rt.interpreter, self.rt.project])
        accounts = podspec.account_files(image, user=user, group=group, passwd=_read("/etc/passwd"),
                                         groups=_read("/etc/group"))
        for target, content in accounts.items():
            source = self.dir / "etc" / f"{spec['name']}-{Path(target).name}"
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(content)
            image_mounts.append((str(source), target, "ro"))
        return _Prepared(argv=argv, env=env, workdir=spec.get("workingDir") or "/",
                         mounts=[*image_mounts, *self._mounts(spec),
                                 *podspec.project_mounts(image, project=self.rt.project)],
                         privileges=privileges)

    def _mounts(self, spec: Obj) -> list[tuple[str, str, str]]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        mounts = []
        for mount in spec.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                raise podspec.ConfigError("CreateContainerConfigError", f"no volume {mount['name']!r}")
            if "hostPath" in volume:
                source = Path(volume["hostPath"]["path"])
            else:
                source = self.dir / "volumes" / mount["name"]
            if sub := mount.get("subPath"):
                source = source / sub
                if "emptyDir" in volume:
                    source.mkdir(parents=True, exist_ok=True)
            content = any(k in volume for k in ("configMap", "secret", "projected", "downwardAPI"))
            mode = "ro" if mount.get("readOnly") or content else "rw"
            mounts.append((str(source), mount["mountPath"], mode))
        mounts.append((str(self.dir / "resolv.conf"), "/etc/resolv.conf", "ro"))
        mounts.append((str(self.dir / "hosts"), "/etc/hosts", "ro"))
        return mounts

    async def _spawn(self, cs: ContainerState, spec: Obj, prepared: _Prepared) -> _Proc | None:
        """Start the container under its monitor; None (and a terminated state) if it did not start."""
        termination = self.dir / "termination" / cs.name
        termination.parent.mkdir(parents=True, exist_ok=True)
        termination.write_bytes(b"")
        termination.chmod(0o666)
        mounts = [*prepared.mounts,
                  (str(termination), spec.get("terminationMessagePath") or "/dev/termination-log", "rw")]
        containers = self.dir / "containers"
        containers.mkdir(parents=True, exist_ok=True)
        mounts_file = containers / f"{cs.name}.mounts"
        mounts_file.write_text("".join(f"{s}\t{t}\t{m}\n" for s, t, m in mounts))
        netns, _ = network.pod_ids(self.uid)
        enter = [] if self.host_network else [_tool("ip"), "netns", "exec", netns]
        command = [*enter, _tool("unshare"), "--mount", "--uts",
                   "--propagation", "private", _tool("bash"), str(LAUNCHER), str(mounts_file),
                   self._hostname(), prepared.workdir, *prepared.privileges, "--", *prepared.argv]
        log = self.log_path(cs.name, cs.restart_count)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        exit_file = containers / f"{cs.name}-{cs.restart_count}.exit"
        pid_file = exit_file.with_name(exit_file.name + ".pid")
        for stale in (exit_file, pid_file):
            stale.unlink(missing_ok=True)
        started_at = podstatus.now()
        monitor = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(MONITOR), str(log), str(exit_file), "--", *command,
            env=prepared.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        while not pid_file.exists() and monitor.returncode is None:
            await asyncio.sleep(_EXIT_POLL_SECONDS / 4)
        if not pid_file.exists():
            assert monitor.stderr is not None
            error = (await monitor.stderr.read()).decode(errors="replace")[-1000:]
            cs.state = {"terminated": {"exitCode": 128, "reason": "StartError", "startedAt": started_at,
                                       "finishedAt": podstatus.now(), "message": error}}
            self.dirty.set()
            return None
        pid = int(json.loads(pid_file.read_text())["pid"])
        limit = (spec.get("resources") or {}).get("limits", {}).get("memory")
        proc = _Proc(name=cs.name, pid=pid, ticks=_proc_start_ticks(pid), monitor_pid=monitor.pid,
                     monitor_ticks=_proc_start_ticks(monitor.pid), exit_file=exit_file,
                     record=containers / f"{cs.name}.json", restart_count=cs.restart_count,
                     container_id=f"loopwright://{self.uid}/{cs.name}/{cs.restart_count}",
                     started_at=started_at, memory_limit=int(podspec.parse_quantity(limit)) if limit else 0,
                     monitor=monitor)
        proc.save()
        self.procs[cs.name] = proc
        return proc

    async def _kill(self, proc: _Proc, grace: float) -> None:
        """SIGTERM the container's process group, SIGKILL it after the grace period."""
        if not proc.running:
            return
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=max(grace, 0))
        except TimeoutError:
            _killpg(proc.pid, signal.SIGKILL)

    async def stop(self, grace: float) -> None:
        """Stop every process of the pod and record how each container ended."""
        procs = list(self.procs.values())
        await asyncio.gather(*(self._kill(p, grace) for p in procs))
        specs = [*self.spec.get("initContainers", []), *self.spec["containers"]]
        by_name = {c.name: (c, s) for c, s in zip([*self.init, *self.containers], specs, strict=True)}
        for proc in procs:
            result = await proc.wait()
            cs, spec = by_name[proc.name]
            if proc.name in self.procs:
                self._record_exit(cs, spec, proc, result)
        for cs in [*self.init, *self.containers]:
            if "waiting" in cs.state and self.deleting:
                crashed = bool(cs.last_state)
                cs.state = {"terminated": {"exitCode": 137 if crashed else 0,
                                           "reason": "ContainerStatusUnknown" if crashed else "Completed",
                                           "message": "the pod was deleted before the container ran"}}

    # ------------------------------------------------------------------------------------ probes

    async def _probe_all(self, cs: ContainerState, spec: Obj, proc: _Proc) -> None:
        startup = _probe(spec.get("startupProbe"))
        if startup is not None:
            await self._probe_loop(cs, spec, proc, startup, kind="startup")
        cs.started = True
        self.dirty.set()
        loops = []
        if (liveness := _probe(spec.get("livenessProbe"))) is not None:
            loops.append(self._probe_loop(cs, spec, proc, liveness, kind="liveness"))
        if (readiness := _probe(spec.get("readinessProbe"))) is not None:
            loops.append(self._probe_loop(cs, spec, proc, readiness, kind="readiness"))
        await asyncio.gather(*loops)

    async def _probe_loop(self, cs: ContainerState, spec: Obj, proc: _Proc, probe: Obj, *, kind: str) -> None:
        """Probe until the verdict changes what the container is: returns when a startup probe passes."""
        await asyncio.sleep(probe["initialDelaySeconds"])
        successes = failures = 0
        while proc.running:
            ok = await self._probe_once(probe, spec)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "startup" and successes >= probe["successThreshold"]:
                return
            if kind == "readiness":
                ready = cs.ready
                if successes >= probe["successThreshold"]:
                    ready = True
                elif failures >= probe["failureThreshold"]:
                    ready = False
                if ready != cs.ready:
                    cs.ready = ready
                    self.dirty.set()
                    if not ready:
                        self.event(cs.name, "Unhealthy", "Readiness probe failed", warning=True)
            elif failures >= probe["failureThreshold"]:
                logger.info("%s: container %s failed its %s probe: restarting", self.key, cs.name, kind)
                self.event(cs.name, "Unhealthy", f"{kind.capitalize()} probe failed", warning=True)
                self.event(cs.name, "Killing",
                           f"Container {cs.name} failed {kind} probe, will be restarted")
                grace = probe.get("terminationGracePeriodSeconds") or self.spec.get(
                    "terminationGracePeriodSeconds", 30)
                await self._kill(proc, float(grace))
                return
            await asyncio.sleep(probe["periodSeconds"])

    def _port(self, spec: Obj, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in spec.get("ports", []):
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"no container port named {port!r}")

    async def _probe_once(self, probe: Obj, spec: Obj) -> bool:
        timeout = float(probe["timeoutSeconds"])
        try:
            if http := probe.get("httpGet"):
                scheme = http.get("scheme", "HTTP").lower()
                host = http.get("host") or self.pod_ip
                url = f"{scheme}://{host}:{self._port(spec, http['port'])}{http.get('path', '/')}"
                headers = {h["name"]: h["value"] for h in http.get("httpHeaders", [])}
                async with self.rt.probe_session().get(url, headers=headers, allow_redirects=False,
                                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                    return 200 <= resp.status < 400
            if tcp := probe.get("tcpSocket"):
                host = tcp.get("host") or self.pod_ip
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, self._port(spec, tcp["port"])), timeout)
                writer.close()
                return True
            if exec_ := probe.get("exec"):
                return await self._exec_probe(exec_["command"], spec, timeout)
        except (OSError, TimeoutError, aiohttp.ClientError, ValueError):
            return False
        return False

    async def _exec_probe(self, command: list[str], spec: Obj, timeout: float) -> bool:
        proc = self.procs.get(spec["name"])
        if proc is None:
            return False
        checker = await asyncio.create_subprocess_exec(
            _tool("nsenter"), f"--target={proc.pid}", "--mount", "--net", "--uts", "--", *command,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            return await asyncio.wait_for(checker.wait(), timeout) == 0
        except TimeoutError:
            _killpg(checker.pid, signal.SIGKILL)
            await checker.wait()
            return False
