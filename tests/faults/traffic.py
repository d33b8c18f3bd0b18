"""The fault suite's client: a pod that keeps predicting through a Service and counts what failed.

One TCP connection per request (so kube-proxy spreads them and a vanished backend shows at once),
a bounded loop (`seconds`, and at most 60,000 requests), and every 2 s a JSON line of running totals:
requests sent, status codes, and failures by kind. `cut` counts requests a server dropped after
accepting them (reset or disconnected while answering): requests already being answered that did not
get their answer. `refused` and `timeout` count requests that found no backend.
The test reads the latest totals (`Client.totals`) before and after each fault: the difference is the
fault's figure.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from conftest import ML_IMAGE, restricted

_SCRIPT = r"""
import http.client, json, random, socket, sys, time
host, path, seconds, pause = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
totals = {"n": 0, "ok": 0, "codes": {}, "failures": {}, "last_failure": ""}
rng = random.Random(7)
CUT = (ConnectionResetError, http.client.RemoteDisconnected, http.client.IncompleteRead, BrokenPipeError)
def kind(exc):
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, CUT):
        return "cut"
    if isinstance(exc, socket.gaierror):
        return "dns"
    return type(exc).__name__
deadline, reported = time.monotonic() + seconds, 0.0
while time.monotonic() < deadline and totals["n"] < 60000:
    if time.monotonic() - reported > 2:
        totals["t"] = time.time()
        print(json.dumps(totals), flush=True)
        reported = time.monotonic()
    rows = [{"a": round(rng.gauss(0, 1), 4), "b": round(rng.gauss(0, 1), 4), "c": round(rng.gauss(0, 1), 4)}]
    try:
        conn = http.client.HTTPConnection(host, 80, timeout=5)
        conn.request("POST", path, json.dumps({"instances": rows}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        code = str(response.status)
        totals["codes"][code] = totals["codes"].get(code, 0) + 1
        if code == "200":
            totals["ok"] += 1
        else:
            totals["last_failure"] = f"{time.strftime('%H:%M:%S', time.gmtime())} HTTP {code}"
    except Exception as exc:
        name = kind(exc)
        totals["failures"][name] = totals["failures"].get(name, 0) + 1
        totals["last_failure"] = f"{time.strftime('%H:%M:%S', time.gmtime())} {type(exc).__name__}: {exc}"
    totals["n"] += 1
    time.sleep(pause)
totals["t"] = time.time()
print(json.dumps(totals), flush=True)
"""


@dataclass(frozen=True)
class Totals:
    n: int
    ok: int
    failures: dict[str, int]
    codes: dict[str, int]
    at: float

    @property
    def failed(self) -> int:
        return self.n - self.ok

    def minus(self, before: Totals) -> Totals:
        keys = set(self.failures) | set(before.failures)
        codes = set(self.codes) | set(before.codes)
        return Totals(n=self.n - before.n, ok=self.ok - before.ok, at=self.at,
                      failures={k: self.failures.get(k, 0) - before.failures.get(k, 0) for k in keys
                                if self.failures.get(k, 0) != before.failures.get(k, 0)},
                      codes={k: self.codes.get(k, 0) - before.codes.get(k, 0) for k in codes
                             if self.codes.get(k, 0) != before.codes.get(k, 0)})

    def describe(self) -> str:
        """'3/412 failed (refused 3)'."""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items()))
        codes = ", ".join(f"HTTP {k} {v}" for k, v in sorted(self.codes.items()) if k != "200")
        detail = "; ".join(x for x in (kinds, codes) if x)
        return f"{self.failed}/{self.n} failed" + (f" ({detail})" if detail else "")


@dataclass(frozen=True)
class Client:
    kube: Any
    namespace: str
    name: str

    @classmethod
    def start(cls, kube: Any, namespace: str, *, service: str, model: str, seconds: float = 900,
              pause: float = 0.05, name: str = "fault-client") -> Client:
        host = f"{service}.{namespace}.svc.cluster.local"
        kube.core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": restricted({"restartPolicy": "Never", "containers": [{
                "name": "client", "image": ML_IMAGE,
                "command": ["python", "-c", _SCRIPT, host, f"/v1/models/{model}:predict", str(seconds),
                            str(pause)],
                "resources": {"requests": {"cpu": "20m", "memory": "32Mi"},
                              "limits": {"memory": "128Mi"}}}]})})
        client = cls(kube, namespace, name)
        kube.wait(client._lines, timeout=120, what=f"client {name} to report")
        return client

    def _lines(self) -> list[str]:
        try:
            log = self.kube.logs(self.namespace, self.name)
        except Exception:  # not started yet
            return []
        return [line for line in log.splitlines() if line.startswith("{")]

    def totals(self, *, after: float | None = None) -> Totals:
        """The latest running totals; with `after` (a time.time()), the first ones reported after it."""
        def probe() -> dict[str, Any] | None:
            lines = self._lines()
            last: dict[str, Any] | None = json.loads(lines[-1]) if lines else None
            return last if last is not None and (after is None or last["t"] > after) else None

        found = self.kube.wait(probe, timeout=30, what=f"totals of client {self.name}", interval=0.5)
        return Totals(n=found["n"], ok=found["ok"], failures=found["failures"], codes=found["codes"],
                      at=found["t"])

    def now(self) -> Totals:
        """Totals reported after this moment (waits up to one reporting period)."""
        return self.totals(after=time.time())

    def stop(self) -> Totals:
        final = self.now()
        self.kube.core.delete_namespaced_pod(self.name, self.namespace, grace_period_seconds=0)
        return final


class HostLoop:
    """The same bounded client loop run from the host, in a thread, for faults that take the client pod
    down too (a node restart): to `http://address/...` (the node's address and a NodePort)."""

    def __init__(self, address: str, *, model: str, seconds: float = 600, pause: float = 0.05) -> None:
        self.address, self.model, self.seconds, self.pause = address, model, seconds, pause
        self.results: list[tuple[float, str]] = []  # (time.monotonic(), "ok" or the failure kind)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        body = json.dumps({"instances": [{"a": 0.1, "b": -0.2, "c": 0.3}]})
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline and len(self.results) < 60000:
            try:
                conn = http.client.HTTPConnection(self.address, timeout=2)
                conn.request("POST", f"/v1/models/{self.model}:predict", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                conn.close()
                outcome = "ok" if response.status == 200 else f"HTTP {response.status}"
            except OSError as exc:
                outcome = ("refused" if isinstance(exc, ConnectionRefusedError) else
                           "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)
            except http.client.HTTPException as exc:
                outcome = type(exc).__name__
            self.results.append((time.monotonic(), outcome))
            time.sleep(self.pause)

    def stop(self) -> list[tuple[float, str]]:
        self._stop.set()
        self._thread.join(timeout=10)
        return list(self.results)
