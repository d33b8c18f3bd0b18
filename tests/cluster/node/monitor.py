"""The parent of one container process, so the container outlives a restart of the node agent.

    python -S monitor.py <log-file> <state-file> -- <command...>

It starts the command in a session of its own (the agent signals that process group), writes the
container's pid to <state-file>.pid, copies stdout and stderr into <log-file> as CRI log records
(`<RFC3339Nano> <stream> <F|P> <text>`), and when the container ends it kills what is left of its
process group and writes {"exitCode", "signal", "finishedAt"} to <state-file>. A restarted agent
reads these files instead of needing to be the container's parent. Standard library only: it
runs with `-S` and starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

_CHUNK = 16 * 1024  # longer output lines are split into partial (P) records, as CRI does


def timestamp() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def cri_line(stream: str, data: bytes, *, partial: bool, at: str) -> bytes:
    return f"{at} {stream} {'P' if partial else 'F'} ".encode() + data + b"\n"


def _pump(source: IO[bytes], stream: str, sink: IO[bytes], lock: threading.Lock) -> None:
    while line := source.readline(_CHUNK):
        complete = line.endswith(b"\n")
        record = cri_line(stream, line[:-1] if complete else line, partial=not complete, at=timestamp())
        with lock:
            sink.write(record)


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


def main(argv: list[str]) -> int:
    log_file, state_file, separator, *command = argv
    if separator != "--" or not command:
        print("usage: monitor.py <log-file> <state-file> -- <command...>", file=sys.stderr)
        return 2
    state = Path(state_file)
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    _write_json(state.with_name(state.name + ".pid"), {"pid": child.pid})
    lock = threading.Lock()
    with open(log_file, "ab", buffering=0) as sink:
        assert child.stdout is not None
        assert child.stderr is not None
        pumps = [threading.Thread(target=_pump, args=(child.stdout, "stdout", sink, lock)),
                 threading.Thread(target=_pump, args=(child.stderr, "stderr", sink, lock))]
        for pump in pumps:
            pump.start()
        returncode = child.wait()
        # What is left of the group goes with the main process (and releases the pipes).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        for pump in pumps:
            pump.join()
    finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    exit_code = returncode if returncode >= 0 else 128 - returncode
    _write_json(state, {"exitCode": exit_code, "signal": -returncode if returncode < 0 else None,
                        "finishedAt": finished})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
