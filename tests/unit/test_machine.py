"""images/machine.py: which machine fixes apply, the kind config they give, the host sysctls."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from machine import (
    KUBELET_MAX_PODS,
    KUBELET_SYSCTLS,
    S3_NODE_PORT,
    Fixes,
    detect,
    has_capability,
    kind_config,
    restore_sysctls,
    s3_host_port,
    save_sysctls,
)

FULL_CAPS = "000001ffffffffff"
NO_SYS_RESOURCE = "000001fffeffffff"  # what root's bounding set is on the development machines


def test_capability_bits() -> None:
    assert has_capability(FULL_CAPS, 24)
    assert not has_capability(NO_SYS_RESOURCE, 24)
    assert has_capability(NO_SYS_RESOURCE, 21)  # CAP_SYS_ADMIN is still there


def test_no_fix_on_a_stock_machine() -> None:
    assert detect(FULL_CAPS, "cgroup2fs") == Fixes(runc_wrapper=False, restrict_oom_score_adj=False,
                                                   allow_cgroup_v1=False)


def test_missing_sys_resource_needs_the_runc_wrapper_and_the_oom_clamp() -> None:
    fixes = detect(NO_SYS_RESOURCE, "cgroup2fs")
    assert fixes.runc_wrapper
    assert fixes.restrict_oom_score_adj
    assert not fixes.allow_cgroup_v1


def test_cgroup_v1_needs_the_kubelet_flag() -> None:
    assert detect(FULL_CAPS, "tmpfs").allow_cgroup_v1


def test_stock_config_only_raises_the_pod_limit() -> None:
    config = yaml.safe_load(kind_config(name="c1", s3_port=9901, fixes=detect(FULL_CAPS, "cgroup2fs")))
    assert config["name"] == "c1"
    (kubelet,) = config["kubeadmConfigPatches"]
    assert yaml.safe_load(kubelet) == {"kind": "KubeletConfiguration", "maxPods": KUBELET_MAX_PODS}
    assert "containerdConfigPatches" not in config
    (node,) = config["nodes"]
    assert node["extraPortMappings"] == [{"containerPort": S3_NODE_PORT, "hostPort": 9901,
                                          "listenAddress": "127.0.0.1", "protocol": "TCP"}]
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"


def test_fixes_become_kubelet_and_containerd_patches() -> None:
    fixes = detect(NO_SYS_RESOURCE, "tmpfs")
    config = yaml.safe_load(kind_config(name="loopwright", s3_port=9900, fixes=fixes))
    (kubelet,) = config["kubeadmConfigPatches"]
    assert yaml.safe_load(kubelet) == {"kind": "KubeletConfiguration", "maxPods": KUBELET_MAX_PODS,
                                       "failCgroupV1": False}
    (containerd,) = config["containerdConfigPatches"]
    assert "restrict_oom_score_adj = true" in containerd
    assert containerd.lstrip().startswith('[plugins."io.containerd.grpc.v1.cri"]')


def _proc_sys(root: Path, values: dict[str, str]) -> Path:
    for key, value in values.items():
        path = root / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return root


def test_sysctls_saved_once_and_restored(tmp_path: Path) -> None:
    proc = _proc_sys(tmp_path / "proc", {"vm.overcommit_memory": "0", "kernel.panic": "1",
                                         "kernel.panic_on_oops": "0"})
    record = tmp_path / "saved.json"
    save_sysctls(record, proc)
    # kubelet changes them; a second cluster's save must not record kubelet's values.
    _proc_sys(proc, {"vm.overcommit_memory": "1", "kernel.panic": "10", "kernel.panic_on_oops": "1"})
    save_sysctls(record, proc)
    assert restore_sysctls(record, proc) == {"vm.overcommit_memory": "0", "kernel.panic": "1",
                                             "kernel.panic_on_oops": "0"}
    assert {k: (proc / k.replace(".", "/")).read_text().strip() for k in KUBELET_SYSCTLS} == {
        "vm.overcommit_memory": "0", "kernel.panic": "1", "kernel.panic_on_oops": "0"}
    assert not record.exists()
    assert restore_sysctls(record, proc) == {}


def test_the_s3_port_is_9900_when_free_else_another_free_port() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        assert s3_host_port(preferred=taken) != taken
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert s3_host_port(preferred=free) == free
