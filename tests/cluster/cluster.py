"""The project's local Kubernetes cluster: `up`, `down` and `status`.

Usage: .venv/bin/python tests/cluster/cluster.py up|down|status

`up` builds (or reuses) the binaries, generates the PKI, starts etcd, the API server, the
controller manager and the scheduler, the node agent and the service proxy, CoreDNS and the
S3 server, then writes .cluster/env for a shell to source. Every component is a background
process with a pid file in .cluster/run and a log in .cluster/logs, so a second `up` finds
the running cluster instead of starting another, and `down` stops exactly what `up` started.
"""
from __future__ import annotations

import argparse
import fcntl
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import controlplane
import dns
import pki
import procs
import storage

_HERE = Path(__file__).resolve().parent
# The binaries it runs (images/gobuild.sh builds them once into the cache; the local cluster runs a
# newer etcd and CoreDNS than the ones kubeadm names for the kind node).
_PRODUCTS = ("kubernetes", "etcd@v3.6.16", "coredns@v1.14.7", "versitygw")
REPO = _HERE.parents[1]
STATE = REPO / ".cluster"
# Stop order: consumers of the API first, etcd last; the node agent stops its pods on SIGTERM.
_STOP_ORDER = ["serviceproxy", "nodeagent", "coredns", "versitygw",
               "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
_GRACE = {"nodeagent": 40.0}
# Everything below STATE that is wiped by `down`, so the next `up` starts a fresh cluster.
_VOLATILE = ["etcd", "node", "s3", "run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the cluster (no-op if it runs)")
    down = sub.add_parser("down", help="stop the cluster and remove its network and data")
    down.add_argument("--keep-data", action="store_true", help="keep etcd and S3 data for the next up")
    sub.add_parser("status", help="show the components; exit 1 unless all run")
    args = parser.parse_args()
    if args.command == "status":
        return _status()
    STATE.mkdir(exist_ok=True)
    # Test sessions in parallel may all call `up` at once: one starts, the others then find it running.
    with (STATE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _up_or_down(args)


def _up_or_down(args: argparse.Namespace) -> int:
    if args.command == "up":
        try:
            return _up()
        except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as error:
            print(f"cluster.py up failed: {error}\nlogs: {STATE / 'logs'}; clean up with `cluster.py down`",
                  file=sys.stderr)
            return 1
    return _down(keep_data=args.keep_data)


def _supervisor() -> procs.Supervisor:
    return procs.Supervisor(run_dir=STATE / "run", log_dir=STATE / "logs")


def _up() -> int:
    started = time.monotonic()
    supervisor = _supervisor()
    bins = Path(subprocess.run(
        ["bash", str(_HERE.parents[1] / "images" / "gobuild.sh"), "--link", *_PRODUCTS],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout.strip().splitlines()[-1])
    _refuse_strays(supervisor)
    if not any(supervisor.pid(name) for name in _STOP_ORDER):
        _refuse_busy_ports()
        shutil.rmtree(STATE / "logs", ignore_errors=True)  # a fresh cluster gets fresh logs
        # No cluster serves here, so any lw0/netns left over is debris of a killed one (its pods'
        # veths would hold the IPs the new node agent hands out): start from a clean network.
        _network("down")
    material = pki.ensure(directory=STATE / "pki", certs=controlplane.certs())
    controlplane.write_kubeconfigs(pki=material, directory=STATE)
    _network("up")
    etcd, apiserver, controller_manager, scheduler = controlplane.procs(bins=bins, pki=material, state=STATE)
    s3 = storage.proc(bins=bins, state=STATE)

    started_any = supervisor.start(s3)
    started_any |= supervisor.start(etcd)
    supervisor.wait_ready(etcd, timeout=20)
    started_any |= supervisor.start(apiserver)
    supervisor.wait_ready(apiserver, timeout=60)
    api = controlplane.Api(pki=material)
    for obj in [*dns.RBAC, *storage.objects(state=STATE)]:
        api.apply(obj)

    rest = [controller_manager, scheduler, *_node_procs(material)]
    if _bridge_up():
        rest.append(dns.proc(bins=bins, state=STATE))
    else:
        _warn(f"{controlplane.NODE_IP} is not on this host (no lw0 bridge): CoreDNS not started")
    for proc in rest:
        started_any |= supervisor.start(proc)
    supervisor.wait_ready(s3, timeout=20)
    storage.create_bucket(state=STATE)
    for proc in rest:
        supervisor.wait_ready(proc, timeout=60)

    env = _write_env(bins=bins)
    verb = "up in" if started_any else "already running; checked in"
    print(f"cluster {verb} {time.monotonic() - started:.1f}s (API https://127.0.0.1:{controlplane.API_PORT})")
    print(f"  source {env.relative_to(REPO)}   # KUBECONFIG and S3 credentials for this shell")
    print("  kubectl get nodes,pods -A")
    print(f"  logs in {(STATE / 'logs').relative_to(REPO)}/; stop with: make cluster-down")
    return 0


def _node_procs(material: pki.Pki) -> list[procs.Proc]:
    """The node agent and the service proxy (separate scripts), if they exist yet."""
    admin = str(STATE / "admin.kubeconfig")
    api = controlplane.Api(pki=material)
    wanted = [
        procs.Proc("nodeagent", [
            sys.executable, str(_HERE / "nodeagent.py"), "--kubeconfig", admin,
            "--node-name", controlplane.NODE_NAME, "--node-ip", controlplane.NODE_IP,
            "--state-dir", str(STATE / "node"), "--dns", controlplane.NODE_IP,
            "--tls-cert", str(material.crt("node-serving")), "--tls-key", str(material.key("node-serving")),
            "--client-ca", str(material.ca_crt),
        ], ready=lambda: api.node_ready(controlplane.NODE_NAME)),
        procs.Proc("serviceproxy", [sys.executable, str(_HERE / "serviceproxy.py"), "--kubeconfig", admin]),
    ]
    present = [proc for proc in wanted if Path(proc.argv[1]).exists()]
    for proc in wanted:
        if proc not in present:
            _warn(f"{Path(proc.argv[1]).relative_to(REPO)} does not exist yet: {proc.name} not started")
    return present


def _network(action: str) -> None:
    script = _HERE / "network.py"
    if not script.exists():
        _warn(f"{script.relative_to(REPO)} does not exist yet: no bridge, pods cannot get an IP")
        return
    subprocess.run([sys.executable, str(script), action], check=True)


def _bridge_up() -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((controlplane.NODE_IP, 0))
        except OSError:
            return False
    return True


def _write_env(*, bins: Path) -> Path:
    """A file a shell can source: the API for kubectl (one of the same version first on PATH)
    and S3 under boto3's standard names."""
    creds = storage.credentials(state=STATE)
    # Host processes and pods both reach the bridge address; 127.0.0.1 would be a pod's own loopback.
    in_cluster = f"http://{controlplane.NODE_IP}:{storage.PORT}" if _bridge_up() else storage.HOST_ENDPOINT
    values = {
        "KUBECONFIG": str(STATE / "admin.kubeconfig"),
        "AWS_ENDPOINT_URL": storage.HOST_ENDPOINT,
        "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": storage.REGION,
        "LOOPWRIGHT_S3_ENDPOINT": in_cluster,
        "LOOPWRIGHT_ARTIFACT_BUCKET": storage.BUCKET,
        "LOOPWRIGHT_S3_SECRET": f"{storage.NAMESPACE}/{storage.SECRET}",
    }
    path = STATE / "env"
    lines = [f"export {key}='{value}'\n" for key, value in values.items()]
    lines.append(f"export PATH='{bins}':\"$PATH\"\n")
    path.write_text("".join(lines))
    path.chmod(0o600)
    return path


def _down(*, keep_data: bool) -> int:
    supervisor = _supervisor()
    for name in _STOP_ORDER:
        if supervisor.stop(name, grace=_GRACE.get(name, 10.0)):
            print(f"stopped {name}")
    for pid in _strays(supervisor):
        _warn(f"stopping stray process {pid} (no pid file)")
        procs.terminate(pid, grace=5)
    if _busy_port() is None:
        _network("down")
    else:
        _warn("another cluster still serves on this machine: leaving the shared network in place")
    for name in [] if keep_data else _VOLATILE:
        shutil.rmtree(STATE / name, ignore_errors=True)
    (STATE / "env").unlink(missing_ok=True)
    print("cluster down" + (" (data kept)" if keep_data else ""))
    return 0


def _status() -> int:
    supervisor = _supervisor()
    missing = 0
    for name in reversed(_STOP_ORDER):
        pid = supervisor.pid(name)
        missing += pid is None
        print(f"{name:24} {'running, pid ' + str(pid) if pid else 'stopped'}")
    material = pki.Pki(dir=STATE / "pki")
    ready = material.ca_crt.exists() and controlplane.Api(pki=material).ready()
    print(f"{'API /readyz':24} {'ok' if ready else 'not ready'}")
    return 0 if ready and not missing else 1


def _strays(supervisor: procs.Supervisor) -> list[int]:
    """Our programs running on this state dir that no pid file accounts for."""
    programs = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "coredns",
                "versitygw", "nodeagent.py", "serviceproxy.py"}
    tracked = {supervisor.pid(name) for name in _STOP_ORDER}
    return [pid for pid in procs.strays(marker=str(STATE), programs=programs) if pid not in tracked]


def _refuse_strays(supervisor: procs.Supervisor) -> None:
    strays = _strays(supervisor)
    if strays:
        raise SystemExit(f"processes of an earlier cluster still run without pid files ({strays}): "
                         "run `cluster.py down` first")


def _refuse_busy_ports() -> None:
    """Stop before touching anything if another cluster (e.g. from another checkout) is serving.

    The bridge is per machine, not per checkout: starting half a second cluster and then tearing
    it down would take the network away from the first one.
    """
    port = _busy_port()
    if port is not None:
        raise SystemExit(f"port {port} is already in use (another cluster running?): not starting")


def _busy_port() -> int | None:
    for port in (controlplane.API_PORT, 2379, storage.PORT):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return port
    return None


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
