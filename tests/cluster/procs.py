"""Background processes of the local cluster, tracked by pid files.

A pid file records the pid and the exact argv. A pid is only ever signalled while its
/proc/<pid>/cmdline still equals that argv, so a recycled pid of an unrelated process is
never touched, and a second `up` recognises components that are already running.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Proc:
    """One long-running component: how to start it and how to tell it is serving."""

    name: str
    argv: list[str]
    ready: Callable[[], bool] | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Supervisor:
    """Starts and stops processes with pid files in `run_dir` and logs in `log_dir`."""

    run_dir: Path
    log_dir: Path

    def pid(self, name: str) -> int | None:
        """The pid of a running component, if its pid file still describes a live process."""
        record = self._record(name)
        if record is None:
            return None
        pid = int(record["pid"])
        argv = _cmdline(pid)
        for _ in range(5):
            if argv is not None or not _alive(pid):
                break
            # Right after exec the kernel briefly shows an empty command line (the new
            # arguments are not mapped yet): a live process with none is asked again.
            time.sleep(0.02)
            argv = _cmdline(pid)
        return pid if argv == record["argv"] else None

    def _record(self, name: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads((self.run_dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None
        return record

    def start(self, proc: Proc) -> bool:
        """Start `proc` in a session of its own unless it already runs; say whether it started."""
        if self.pid(proc.name) is not None:
            return False
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{proc.name}.log").open("ab") as log:
            child = subprocess.Popen(
                proc.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **proc.env}, start_new_session=True)
        pidfile = self.run_dir / f"{proc.name}.pid"
        pidfile.write_text(json.dumps({"pid": child.pid, "argv": proc.argv}))
        return True

    def wait_ready(self, proc: Proc, *, timeout: float) -> None:
        """Wait until `proc.ready()` holds; fail early with the log tail if the process died."""
        deadline = time.monotonic() + timeout
        record = self._record(proc.name)
        while True:
            if record is None or not _alive(int(record["pid"])):
                raise RuntimeError(f"{proc.name} exited during start-up:\n{self.tail(proc.name)}")
            if proc.ready is None or proc.ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} not ready after {timeout:.0f}s:\n{self.tail(proc.name)}")
            time.sleep(0.2)

    def stop(self, name: str, *, grace: float = 10.0) -> bool:
        """SIGTERM the process and its session, then SIGKILL what is left after `grace` seconds."""
        pid = self.pid(name)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        if pid is None:
            return False
        terminate(pid, grace=grace)
        return True

    def tail(self, name: str, *, lines: int = 20) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def terminate(pid: int, *, grace: float) -> None:
    """Stop one process gracefully, then anything still left in its session (it leads one)."""
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        _signal(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def strays(*, marker: str, programs: set[str]) -> Iterator[int]:
    """Pids of our programs whose command line mentions `marker` (the cluster's state dir).

    These are leftovers whose pid file was lost (a killed `up`, a deleted .cluster/run);
    both conditions must hold, so unrelated processes, e.g. an editor on a log file, are spared.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = _cmdline(int(entry.name))
        if not argv or not any(marker in arg for arg in argv):
            continue
        names = {Path(argv[0]).name} | {Path(a).name for a in argv[1:3]}
        if names & programs:
            yield int(entry.name)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] or None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; its parent (us) may not have reaped it yet


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
