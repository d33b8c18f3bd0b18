"""The node agent's pure parts: IP pool, pod spec translation, status, log records."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

import network
from node import logs, monitor, spec, status
from node.runtime import backoff_seconds


def _pod(**spec_fields: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "uid": "1234-abcd",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {
            "nodeName": "loopwright-node",
            "serviceAccountName": "runner",
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11-slim",
                    "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                }
            ],
            **spec_fields,
        },
    }


def _ctx(pod: dict[str, Any] | None = None) -> spec.PodContext:
    return spec.PodContext(
        pod=pod or _pod(),
        pod_ip="10.244.0.9",
        host_ip="10.244.0.1",
        node_allocatable={"cpu": "2", "memory": "24Gi"},
    )


# ------------------------------------------------------------------------------------- network


def test_ip_pool_keeps_an_address_per_pod_and_reuses_a_released_one_last() -> None:
    pool = network.IpPool()
    assert pool.allocate("a") == "10.244.0.2"
    assert pool.allocate("b") == "10.244.0.3"
    assert pool.allocate("a") == "10.244.0.2"
    pool.release("a")
    # Not .2 again: neighbours may still hold a's MAC for it.
    assert pool.allocate("c") == "10.244.0.4"


def test_ip_pool_wraps_around_to_the_free_addresses() -> None:
    pool = network.IpPool(
        network=ipaddress.IPv4Network("10.0.0.0/29"), reserved=frozenset({ipaddress.IPv4Address("10.0.0.1")})
    )
    assert [pool.allocate(uid) for uid in "abcde"] == [f"10.0.0.{n}" for n in range(2, 7)]
    pool.release("c")
    pool.release("a")
    assert pool.allocate("f") == "10.0.0.2"  # the first free one after the last handed out
    assert pool.allocate("g") == "10.0.0.4"


def test_ip_pool_survives_a_restart(tmp_path: Path) -> None:
    pool = network.IpPool()
    pool.allocate("a")
    pool.allocate("b")
    pool.release("a")
    pool.dump(tmp_path / "ipam.json")
    again = network.IpPool.load(tmp_path / "ipam.json")
    assert again.allocate("b") == "10.244.0.3"
    assert again.allocate("new") == "10.244.0.4"  # where the pool left off, not the released .2
    assert network.IpPool.load(tmp_path / "missing.json").assigned == {}


def test_ip_pool_reports_exhaustion() -> None:
    pool = network.IpPool(
        network=ipaddress.IPv4Network("10.0.0.0/30"), reserved=frozenset({ipaddress.IPv4Address("10.0.0.1")})
    )
    assert pool.allocate("a") == "10.0.0.2"
    with pytest.raises(RuntimeError, match="no free pod IP"):
        pool.allocate("b")


def test_pod_interface_names_fit_the_kernel_limit() -> None:
    netns, veth = network.pod_ids("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    assert netns == "lw-0f1e2d3c4b"
    assert veth == "lwv0f1e2d3c4b"
    assert len(veth) <= 15


# ------------------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64Mi", 64 * 2**20),
        ("500m", 0.5),
        ("2", 2),
        ("1G", 10**9),
        ("1.5Gi", 1.5 * 2**30),
        ("1e3", 1000),
    ],
)
def test_quantities(text: str, value: float) -> None:
    assert spec.parse_quantity(text) == pytest.approx(value)


def test_bad_quantity() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        spec.parse_quantity("12 apples")


# ------------------------------------------------------------------------------------- env


def test_expand_follows_kubelet_rules() -> None:
    env = {"A": "x", "B": "y"}
    assert spec.expand("$(A)-$(B)", env) == "x-y"
    assert spec.expand("$(MISSING) $$(A) $$", env) == "$(MISSING) $(A) $"
    assert spec.expand("$(A", env) == "$(A"


def _service(namespace: str, name: str, ip: str, *ports: tuple[str, int]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"clusterIP": ip, "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]},
    }


def test_service_links_cover_the_namespace_and_the_master_service() -> None:
    services = [
        _service("default", "kubernetes", "10.96.0.1", ("https", 443)),
        _service("shop", "web-api", "10.96.0.20", ("http", 80), ("", 9090)),
        _service("shop", "headless", "None", ("http", 80)),
        _service("other", "elsewhere", "10.96.0.30", ("http", 80)),
    ]
    env = spec.service_env(services, namespace="shop", enable_links=True)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["WEB_API_SERVICE_HOST"] == "10.96.0.20"
    assert env["WEB_API_SERVICE_PORT"] == "80"
    assert env["WEB_API_SERVICE_PORT_HTTP"] == "80"
    assert env["WEB_API_PORT"] == "tcp://10.96.0.20:80"
    assert env["WEB_API_PORT_9090_TCP_ADDR"] == "10.96.0.20"
    assert env["WEB_API_PORT_9090_TCP_PROTO"] == "tcp"
    assert not any(k.startswith(("HEADLESS_", "ELSEWHERE_")) for k in env)
    without = spec.service_env(services, namespace="shop", enable_links=False)
    assert set(without) == {k for k in env if k.startswith("KUBERNETES_")}


def test_container_env_resolves_every_source_in_kubelet_order() -> None:
    pod = _pod()
    container = {
        "name": "main",
        "image": "busybox",
        "envFrom": [{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "creds"}, "prefix": "S_"}],
        "env": [
            {"name": "MODE", "value": "override"},
            {"name": "GREETING", "value": "$(MODE)-$(WEB_SERVICE_HOST)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {
                "name": "MAYBE",
                "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": True}},
            },
        ],
    }
    configmaps = {
        "settings": {"data": {"MODE": "from-cm", "level": "debug", "bad key": "skipped"}},
        "absent": None,
    }
    secrets = {"creds": {"data": {"password": base64.b64encode(b"s3cret").decode()}}}
    env = spec.container_env(
        _ctx(pod),
        container,
        services_env={"WEB_SERVICE_HOST": "10.96.0.5", "MODE": "svc"},
        configmaps=configmaps,
        secrets=secrets,
        base={"PATH": "/bin", "HOME": "/root"},
    )
    assert env["MODE"] == "override"
    assert env["GREETING"] == "override-10.96.0.5"
    assert env["S_password"] == "s3cret"
    assert env["PASSWORD"] == "s3cret"
    assert env["LEVEL"] == "debug"
    assert (env["POD"], env["NS"], env["IP"], env["TIER"]) == ("web-1", "shop", "10.244.0.9", "front")
    assert (env["SA"], env["HOST_IP"], env["MEM_MI"]) == ("runner", "10.244.0.1", "64")
    assert env["WEB_SERVICE_HOST"] == "10.96.0.5"
    assert env["PATH"] == "/bin"
    assert "MAYBE" not in env
    assert "bad key" not in env


def test_missing_secret_key_is_a_config_error() -> None:
    container = {
        "name": "main",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    with pytest.raises(spec.ConfigError) as caught:
        spec.container_env(
            _ctx(), container, services_env={}, configmaps={}, secrets={"s": {"data": {}}}, base={}
        )
    assert caught.value.reason == "CreateContainerConfigError"
    assert "couldn't find key k" in caught.value.message
    with pytest.raises(spec.ConfigError, match='secret "s" not found'):
        spec.container_env(_ctx(), container, services_env={}, configmaps={}, secrets={}, base={})


def test_downward_api_labels_are_quoted_lines() -> None:
    assert spec.field_value(_ctx(), "metadata.labels") == 'app="web"\ntier="front"'
    assert spec.field_value(_ctx(), "metadata.annotations") == 'note="say \\"hi\\""'
    assert spec.field_value(_ctx(), "metadata.uid") == "1234-abcd"
    with pytest.raises(spec.ConfigError):
        spec.field_value(_ctx(), "status.phase")


def test_referenced_names() -> None:
    pod = _pod(
        volumes=[
            {"name": "a", "configMap": {"name": "cm1"}},
            {"name": "b", "secret": {"secretName": "s1"}},
            {"name": "c", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}},
        ]
    )
    pod["spec"]["containers"][0]["env"] = [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}
    ]
    assert spec.referenced_names(pod) == ({"cm1", "kube-root-ca.crt"}, {"s1", "s2"})


# ------------------------------------------------------------------------------------- images


def test_project_images_run_from_the_repository_venv() -> None:
    venv = Path("/repo/.venv/bin")
    assert spec.image_path("loopwright/trainer:0.1.0", venv_bin=venv).startswith("/repo/.venv/bin:")
    assert spec.image_path("python:3.11-slim", venv_bin=venv) == spec.SYSTEM_PATH
    assert spec.container_argv({"image": "loopwright/trainer:0.1.0", "args": ["--x"]}, {}) == [
        "loopwright-trainer",
        "--x",
    ]
    assert spec.container_argv({"image": "busybox", "args": ["sh", "-c", "echo $(A)"]}, {"A": "1"}) == [
        "sh",
        "-c",
        "echo 1",
    ]
    with pytest.raises(spec.ConfigError, match="no entrypoint"):
        spec.container_argv({"image": "busybox"}, {})


def test_find_executable(tmp_path: Path) -> None:
    assert spec.find_executable("sh", path=spec.SYSTEM_PATH, workdir="/") is not None
    assert spec.find_executable("definitely-not-a-command-here", path=spec.SYSTEM_PATH, workdir="/") is None
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    assert spec.find_executable("./run.sh", path="", workdir=str(tmp_path)) is None
    script.chmod(0o755)
    assert spec.find_executable("./run.sh", path="", workdir=str(tmp_path)) == str(script)


# ------------------------------------------------------------------------------------- volumes


def test_standard_service_account_volume() -> None:
    volume = {
        "name": "kube-api-access-x",
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                    }
                },
            ],
        },
    }
    files = spec.volume_files(
        _ctx(),
        volume,
        configmaps={"kube-root-ca.crt": {"data": {"ca.crt": "PEM"}}},
        secrets={},
        tokens={"token": "jwt"},
    )
    assert files is not None
    assert {f.path: (f.data, f.mode) for f in files} == {
        "token": (b"jwt", 420),
        "ca.crt": (b"PEM", 420),
        "namespace": (b"shop", 420),
    }
    assert spec.token_sources(volume) == [{"expirationSeconds": 3607, "path": "token"}]


def test_secret_and_configmap_volumes_project_keys() -> None:
    secret = {"data": {"a": base64.b64encode(b"1").decode(), "b": base64.b64encode(b"2").decode()}}
    files = spec.volume_files(
        _ctx(),
        {"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}},
        configmaps={},
        secrets={"s": secret},
        tokens={},
    )
    assert [(f.path, f.data, f.mode) for f in files or []] == [("a", b"1", 0o400), ("b", b"2", 0o400)]
    cm = {"data": {"k": "v"}, "binaryData": {"bin": base64.b64encode(b"\x00").decode()}}
    files = spec.volume_files(
        _ctx(),
        {
            "name": "c",
            "configMap": {"name": "c", "items": [{"key": "bin", "path": "sub/b.dat", "mode": 0o600}]},
        },
        configmaps={"c": cm},
        secrets={},
        tokens={},
    )
    assert [(f.path, f.data, f.mode) for f in files or []] == [("sub/b.dat", b"\x00", 0o600)]
    with pytest.raises(spec.ConfigError, match='configmap "c" not found'):
        spec.volume_files(
            _ctx(), {"name": "c", "configMap": {"name": "c"}}, configmaps={}, secrets={}, tokens={}
        )
    assert (
        spec.volume_files(
            _ctx(),
            {"name": "c", "configMap": {"name": "c", "optional": True}},
            configmaps={},
            secrets={},
            tokens={},
        )
        == []
    )
    assert (
        spec.volume_files(_ctx(), {"name": "e", "emptyDir": {}}, configmaps={}, secrets={}, tokens={}) is None
    )


def test_resolv_conf_searches_the_pod_namespace_first() -> None:
    text = spec.resolv_conf(namespace="shop", nameserver="10.244.0.1")
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local\n" in text
    assert "nameserver 10.244.0.1\n" in text
    assert "10.244.0.9\tweb-1\n" in spec.etc_hosts(pod_ip="10.244.0.9", hostname="web-1")


# ------------------------------------------------------------------------------------- status


def _cs(name: str, state: dict[str, Any], **kw: Any) -> status.ContainerState:
    return status.ContainerState(name=name, image="busybox", state=state, **kw)


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}


def _done(code: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}


@pytest.mark.parametrize(
    ("policy", "states", "expected"),
    [
        ("Never", [WAITING], "Pending"),
        ("Never", [RUNNING, WAITING], "Pending"),
        ("Never", [RUNNING, _done(0)], "Running"),
        ("Never", [_done(0), _done(0)], "Succeeded"),
        ("Never", [_done(0), _done(3)], "Failed"),
        ("OnFailure", [_done(3)], "Running"),
        ("OnFailure", [_done(0)], "Succeeded"),
        ("Always", [_done(0)], "Running"),
    ],
)
def test_phase(policy: str, states: list[dict[str, Any]], expected: str) -> None:
    containers = [_cs(f"c{i}", s) for i, s in enumerate(states)]
    assert status.phase(restart_policy=policy, init=[], containers=containers) == expected


def test_phase_with_init_containers_and_crash_loops() -> None:
    main = [_cs("main", WAITING)]
    assert status.phase(restart_policy="Never", init=[_cs("i", _done(1))], containers=main) == "Failed"
    assert status.phase(restart_policy="Always", init=[_cs("i", _done(1))], containers=main) == "Pending"
    assert status.phase(restart_policy="Always", init=[_cs("i", RUNNING)], containers=main) == "Pending"
    backoff = [_cs("main", {"waiting": {"reason": "CrashLoopBackOff"}}, last_state=_done(1))]
    assert status.phase(restart_policy="Always", init=[], containers=backoff) == "Running"
    assert (
        status.phase(restart_policy="Always", init=[], containers=[_cs("m", _done(143))], deleting=True)
        == "Failed"
    )


def test_built_status_is_honest_and_keeps_transition_times() -> None:
    pod = _pod()
    pod["status"] = {
        "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "Initialized", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        ]
    }
    main = _cs("main", RUNNING, ready=False, started=True)
    built = status.build(
        pod,
        pod_ip="10.244.0.9",
        host_ip="10.244.0.1",
        start_time="t0",
        sandbox_ready=True,
        init=[],
        containers=[main],
    )
    conditions = {c["type"]: c for c in built["conditions"]}
    assert built["phase"] == "Running"
    assert built["podIPs"] == [{"ip": "10.244.0.9"}]
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert conditions["Ready"]["message"] == "containers with unready status: [main]"
    assert conditions["Initialized"]["status"] == "True"
    assert conditions["Initialized"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert built["containerStatuses"][0]["state"] == RUNNING
    main.ready = True
    again = status.build(
        pod,
        pod_ip="10.244.0.9",
        host_ip="10.244.0.1",
        start_time="t0",
        sandbox_ready=True,
        init=[],
        containers=[main],
    )
    assert {c["type"]: c["status"] for c in again["conditions"]}["Ready"] == "True"
    assert not status.same(built, again)
    assert status.same(
        again,
        status.build(
            pod,
            pod_ip="10.244.0.9",
            host_ip="10.244.0.1",
            start_time="t0",
            sandbox_ready=True,
            init=[],
            containers=[main],
        ),
    )


def test_completed_pod_is_not_ready_with_reason() -> None:
    built = status.build(
        _pod(restartPolicy="Never"),
        pod_ip="",
        host_ip="10.244.0.1",
        start_time="t0",
        sandbox_ready=False,
        init=[],
        containers=[_cs("main", _done(0))],
    )
    ready = next(c for c in built["conditions"] if c["type"] == "Ready")
    assert (built["phase"], ready["status"], ready["reason"]) == ("Succeeded", "False", "PodCompleted")
    assert "podIP" not in built


def test_backoff_doubles_after_the_first_restart() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 4, 10)] == [0, 10, 20, 40, 300]


# ------------------------------------------------------------------------------------- logs


def _records() -> list[bytes]:
    return [
        monitor.cri_line("stdout", b"one", partial=False, at="2026-01-01T00:00:01.000000000Z"),
        monitor.cri_line("stderr", b"two-a", partial=True, at="2026-01-01T00:00:02.000000000Z"),
        monitor.cri_line("stderr", b"two-b", partial=False, at="2026-01-01T00:00:02.100000000Z"),
        monitor.cri_line("stdout", b"three", partial=False, at="2026-01-01T00:00:03.000000000Z"),
    ]


def test_log_records_render_like_kubectl() -> None:
    now = datetime.datetime(2026, 1, 1, 0, 0, 10, tzinfo=datetime.UTC)
    assert b"".join(logs.select(_records(), logs.Query(), now=now)) == b"one\ntwo-atwo-b\nthree\n"
    assert b"".join(logs.select(_records(), logs.Query(tail_lines=2), now=now)) == b"two-atwo-b\nthree\n"
    assert b"".join(logs.select(_records(), logs.Query(tail_lines=0), now=now)) == b""
    stamped = b"".join(logs.select(_records(), logs.Query(tail_lines=1, timestamps=True), now=now))
    assert stamped == b"2026-01-01T00:00:03.000000000Z three\n"
    recent = b"".join(logs.select(_records(), logs.Query(since_seconds=8), now=now))
    assert recent == b"two-atwo-b\nthree\n"


def test_log_query_parsing() -> None:
    query = logs.parse_query({"follow": "true", "tailLines": "5", "previous": "false", "timestamps": "1"})
    assert query == logs.Query(follow=True, tail_lines=5, timestamps=True)
    with pytest.raises(ValueError, match="invalid literal"):
        logs.parse_query({"tailLines": "many"})


def test_non_root_project_containers_see_only_the_interpreter_under_a_private_home() -> None:
    interpreter = Path("/root/.pyenv/versions/3.11.7")
    project = Path("/work/main")

    def traversable(path: Path) -> bool:
        return path != Path("/root")

    def mounts(image: str, user: int | None, paths: list[Path]) -> list[tuple[str, str, str]]:
        return spec.hidden_path_mounts(image, user=user, paths=paths, traversable=traversable)

    assert mounts("loopwright/operator:0.1.0", 65532, [interpreter, project]) == [
        ("tmpfs", "/root", "tmpfs"), (str(interpreter), str(interpreter), "ro")]
    assert mounts("loopwright/operator:0.1.0", 0, [interpreter, project]) == []
    assert mounts("busybox", 1000, [interpreter, project]) == []
    assert spec.hidden_path_mounts(
        "loopwright/trainer", user=1000, paths=[Path("/usr")], traversable=lambda _: True) == []


def test_a_checkout_under_a_private_folder_is_bound_back_for_non_root_project_containers() -> None:
    """A CI clone under `mktemp -d` (mode 0700): uid 65532 could not import the package."""
    interpreter = Path("/root/.pyenv/versions/3.11.7")
    private = {Path("/root"), Path("/tmp/tmp.ab12"), Path("/root/ci")}

    def mounts(project: Path) -> list[tuple[str, str, str]]:
        return spec.hidden_path_mounts("loopwright/trainer:0.1.0", user=65532,
                                       paths=[interpreter, project],
                                       traversable=lambda path: path not in private)

    assert mounts(Path("/tmp/tmp.ab12/x")) == [
        ("tmpfs", "/root", "tmpfs"), ("tmpfs", "/tmp/tmp.ab12", "tmpfs"),
        (str(interpreter), str(interpreter), "ro"), ("/tmp/tmp.ab12/x", "/tmp/tmp.ab12/x", "ro")]
    # Both under one private folder: one tmpfs (a second would hide the first's bind), both bound.
    assert mounts(Path("/root/ci/x")) == [
        ("tmpfs", "/root", "tmpfs"),
        (str(interpreter), str(interpreter), "ro"), ("/root/ci/x", "/root/ci/x", "ro")]

def test_project_containers_know_their_non_root_user() -> None:
    passwd = "root:x:0:0:root:/root:/bin/bash\n"
    groups = "root:x:0:\n"
    files = spec.account_files(
        "loopwright/operator:0.1.0", user=65532, group=65532, passwd=passwd, groups=groups
    )
    assert files["/etc/passwd"].splitlines() == [
        "root:x:0:0:root:/root:/bin/bash",
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin",
    ]
    assert files["/etc/group"].endswith("nonroot:x:65532:\n")
    assert spec.account_files("loopwright/operator", user=0, group=None, passwd=passwd, groups=groups) == {}
    assert spec.account_files("busybox", user=65532, group=None, passwd=passwd, groups=groups) == {}
    known = passwd + "app:x:1000:1000::/home/app:/bin/sh\n"
    assert spec.account_files("loopwright/trainer", user=1000, group=0, passwd=known, groups=groups) == {}


def test_project_images_get_the_checkout_bound_back_over_volumes() -> None:
    project = Path("/tmp/ci/checkout")
    assert spec.project_mounts("loopwright/trainer:0.1.0", project=project) == [
        (str(project), str(project), "ro")]
    assert spec.project_mounts("python:3.11-slim", project=project) == []
