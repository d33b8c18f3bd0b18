"""What this machine needs before kind runs on it, and the kind cluster config that follows.

Pure functions (unit-tested in tests/unit/test_machine.py) plus a small command line for the
shell scripts beside this file. Standard library only: it runs before any virtualenv exists.

  python3 images/machine.py fixes                  -> shell assignments, one per machine fix
  python3 images/machine.py kind-config NAME S3_PORT [API_PORT]
  python3 images/machine.py s3-port
  python3 images/machine.py sysctls save|restore FILE
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CAP_SYS_RESOURCE = 24
# What kubelet sets on the host (it shares the host's kernel) and `kind delete` leaves behind.
KUBELET_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
S3_NODE_PORT = 30900
S3_HOST_PORT = 9900
# kubelet's pod limit on the node (kubelet's default is 110). The fault suite's load case runs 100
# canarying Deployments, 200 predictor pods, beside the system pods on the one node; the node's
# /24 podCIDR gives 253 addresses, so this stays under it.
KUBELET_MAX_PODS = 250


@dataclass(frozen=True)
class Fixes:
    """The three departures from stock kind that a machine may need, each only where detected."""

    # dockerd's runtime drops CAP_SYS_RESOURCE: kind runs nodes --privileged, which asks for every
    # capability, and runc fails ("unable to apply caps") when the bounding set lacks one.
    runc_wrapper: bool
    # containerd in the node clamps oom_score_adj (kind does so for rootless): runc cannot lower it
    # without CAP_SYS_RESOURCE, and every pod sandbox fails.
    restrict_oom_score_adj: bool
    # kubelet >= 1.35 refuses to start on cgroup v1 unless told otherwise.
    allow_cgroup_v1: bool


def has_capability(capbnd_hex: str, capability: int) -> bool:
    return bool(int(capbnd_hex, 16) >> capability & 1)


def detect(capbnd_hex: str, cgroup_fs_type: str) -> Fixes:
    """From `CapBnd` of /proc/self/status and the filesystem type of /sys/fs/cgroup."""
    lacks_sys_resource = not has_capability(capbnd_hex, CAP_SYS_RESOURCE)
    return Fixes(runc_wrapper=lacks_sys_resource, restrict_oom_score_adj=lacks_sys_resource,
                 allow_cgroup_v1=cgroup_fs_type != "cgroup2fs")


def read_fixes() -> Fixes:
    status = Path("/proc/self/status").read_text()
    capbnd = next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:"))
    fs_type = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], check=True, capture_output=True,
                             text=True).stdout.strip()
    return detect(capbnd, fs_type)


def kind_config(*, name: str, s3_port: int, fixes: Fixes, api_port: int = 0) -> str:
    """A kind v1alpha4 Cluster: one node, S3's NodePort on 127.0.0.1:s3_port, kubelet's maxPods
    raised to KUBELET_MAX_PODS, the fixes needed."""
    lines = [
        "# Written by images/kind/cluster.sh (images/machine.py); not edited by hand.",
        "kind: Cluster",
        "apiVersion: kind.x-k8s.io/v1alpha4",
        f"name: {name}",
        "networking:",
        "  ipFamily: ipv4",
        "  apiServerAddress: 127.0.0.1",
        f"  apiServerPort: {api_port}",
        "nodes:",
        "  - role: control-plane",
        "    extraPortMappings:",
        "      # the S3 Service's NodePort (manifests/overlays/kind), for the demo and the tests",
        f"      - {{containerPort: {S3_NODE_PORT}, hostPort: {s3_port}, listenAddress: 127.0.0.1,"
        " protocol: TCP}",
    ]
    lines += ["kubeadmConfigPatches:", "  - |", "    kind: KubeletConfiguration",
              f"    maxPods: {KUBELET_MAX_PODS}"]
    if fixes.allow_cgroup_v1:
        lines += ["    failCgroupV1: false"]
    if fixes.restrict_oom_score_adj:
        lines += ["containerdConfigPatches:", "  - |-", '    [plugins."io.containerd.grpc.v1.cri"]',
                  "      restrict_oom_score_adj = true"]
    return "\n".join(lines) + "\n"


def s3_host_port(preferred: int = S3_HOST_PORT) -> int:
    """The host port for a new cluster's S3: 9900 when free, else one the kernel picks. The engine
    may hold 9900 for another cluster, or for one it restored from an earlier session, and
    `kind create` would then fail with "port is already allocated"."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def save_sysctls(path: Path, proc_sys: Path = Path("/proc/sys")) -> None:
    """Record the host's values before the first cluster (an existing record is kept)."""
    if path.exists():
        return
    values = {key: (proc_sys / key.replace(".", "/")).read_text().strip() for key in KUBELET_SYSCTLS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=1) + "\n")


def restore_sysctls(path: Path, proc_sys: Path = Path("/proc/sys")) -> dict[str, str]:
    """Put the recorded values back and forget them; returns what changed."""
    if not path.exists():
        return {}
    changed = {}
    for key, value in json.loads(path.read_text()).items():
        target = proc_sys / key.replace(".", "/")
        if target.read_text().strip() != value:
            try:
                target.write_text(value + "\n")
            except PermissionError:  # not root (a hosted runner's docker group): say so, go on
                changed[key] = f"{value} (not restored: no permission)"
                continue
            changed[key] = value
    path.unlink()
    return changed


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "fixes":
        for key, value in vars(read_fixes()).items():
            print(f"FIX_{key.upper()}={int(value)}")
    elif command == "kind-config":
        name, s3_port, *rest = args
        print(kind_config(name=name, s3_port=int(s3_port), fixes=read_fixes(),
                          api_port=int(rest[0]) if rest else 0), end="")
    elif command == "s3-port":
        print(s3_host_port())
    elif command == "sysctls" and args[0] == "save":
        save_sysctls(Path(args[1]))
    elif command == "sysctls" and args[0] == "restore":
        for key, value in restore_sysctls(Path(args[1])).items():
            print(f"restored {key}={value}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
