"""Pods really run: Jobs, exit codes, logs, env, volumes, probes, restarts, graceful deletion.

Written against the Kubernetes API only, so they hold on kind as well as on the local cluster,
whose node agent runs each container as a host process (image names map to host commands).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from conftest import Kube

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PYTHON = "python:3.11-slim"
SHELL = "busybox:1.36"


def _job(name: str, command: list[str], *, backoff_limit: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": PYTHON, "command": command}],
                }
            },
        },
    }


def _job_condition(kube: Kube, namespace: str, name: str) -> str | None:
    conditions = kube.batch.read_namespaced_job_status(name, namespace).status.conditions or []
    done = [c.type for c in conditions if c.type in {"Complete", "Failed"} and c.status == "True"]
    return done[0] if done else None


def _job_pod(kube: Kube, namespace: str, job: str) -> Any:
    pods = kube.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def _status(kube: Kube, namespace: str, name: str) -> Any:
    return kube.core.read_namespaced_pod_status(name, namespace).status


def _container(kube: Kube, namespace: str, name: str) -> Any:
    statuses = _status(kube, namespace, name).container_statuses or []
    return statuses[0] if statuses else None


def test_job_runs_to_completion_and_kubectl_logs_reads_it(kube: Kube, namespace: str) -> None:
    script = (
        "import sys, time; print('hello from the job'); print('to stderr', file=sys.stderr); "
        "time.sleep(0.5); print('last line')"  # apart in time: stdout and stderr are separate pipes
    )
    kube.batch.create_namespaced_job(namespace, _job("hello", ["python3", "-u", "-c", script]))

    assert (
        kube.wait(lambda: _job_condition(kube, namespace, "hello"), timeout=90, what="job to finish")
        == "Complete"
    )
    pod = _job_pod(kube, namespace, "hello")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert terminated.started_at <= terminated.finished_at
    assert pod.status.pod_ip
    assert pod.status.start_time is not None

    logs = kube.kubectl("logs", "-n", namespace, "job/hello").stdout.splitlines()
    # stdout and stderr are separate pipes: only the order within each stream is defined.
    assert [line for line in logs if line != "to stderr"] == ["hello from the job", "last line"]
    assert "to stderr" in logs
    assert kube.kubectl("logs", "-n", namespace, "job/hello", "--tail=1").stdout == "last line\n"
    stamped = [line.split(" ", 1) for line in
               kube.kubectl("logs", "-n", namespace, "job/hello", "--timestamps").stdout.splitlines()]
    assert [text for _, text in stamped if text != "to stderr"] == ["hello from the job", "last line"]
    times = {text: datetime.fromisoformat(stamp) for stamp, text in stamped}  # RFC 3339, as the kubelet's
    assert times["last line"] - times["hello from the job"] >= timedelta(seconds=0.4)
    whole_second = timedelta(seconds=1)  # pod status times have whole seconds
    assert terminated.started_at <= times["hello from the job"] < terminated.finished_at + whole_second


def test_failing_job_reports_exit_code(kube: Kube, namespace: str) -> None:
    kube.batch.create_namespaced_job(namespace, _job("fails", ["sh", "-c", "echo about to fail; exit 7"]))

    assert (
        kube.wait(lambda: _job_condition(kube, namespace, "fails"), timeout=90, what="job to fail")
        == "Failed"
    )
    pod = _job_pod(kube, namespace, "fails")
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert (terminated.exit_code, terminated.reason) == (7, "Error")
    assert kube.logs(namespace, pod.metadata.name) == "about to fail\n"


def test_missing_executable_fails_the_container_with_a_reason(kube: Kube, namespace: str) -> None:
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": "nothing"},
            "spec": {"containers": [{"name": "main", "image": SHELL, "command": ["no-such-command-lw"]}]},
        },
    )

    assert pod.status.phase == "Failed"
    state = pod.status.container_statuses[0].state
    reason = state.terminated.reason if state.terminated else state.waiting.reason
    message = state.terminated.message if state.terminated else state.waiting.message
    assert reason in {"ExecutableNotFound", "StartError", "ContainerCannotRun"}
    assert "no-such-command-lw" in message


def test_env_from_secret_configmap_fieldref_and_service_links(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret", "user": "ada"}}
    )
    kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"level": "debug", "MODE": "fast"}}
    )
    kube.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web-api"},
            "spec": {
                "selector": {"app": "none"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
    )
    env = [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "GREETING", "value": "level=$(LEVEL)"},
    ]
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": "env", "labels": {"app": "envtest"}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": PYTHON,
                        "command": ["python3", "-c", script],
                        "env": env,
                        "envFrom": [
                            {"configMapRef": {"name": "settings"}},
                            {"secretRef": {"name": "creds"}, "prefix": "CREDS_"},
                        ],
                    }
                ]
            },
        },
    )

    assert kube.exit_code(pod) == 0, kube.logs(namespace, "env")
    seen = json.loads(kube.logs(namespace, "env"))
    assert (seen["PASSWORD"], seen["LEVEL"], seen["GREETING"]) == ("s3cret", "debug", "level=debug")
    assert (seen["MODE"], seen["CREDS_user"]) == ("fast", "ada")
    assert (seen["POD_NAME"], seen["POD_NAMESPACE"], seen["APP"]) == ("env", namespace, "envtest")
    assert seen["POD_UID"] == pod.metadata.uid
    assert seen["POD_IP"] == pod.status.pod_ip
    assert seen["NODE"] == pod.spec.node_name
    kubernetes = kube.core.read_namespaced_service("kubernetes", "default")
    assert seen["KUBERNETES_SERVICE_HOST"] == kubernetes.spec.cluster_ip
    assert seen["KUBERNETES_SERVICE_PORT"] == "443"
    web = kube.core.read_namespaced_service("web-api", namespace)
    assert seen["WEB_API_SERVICE_HOST"] == web.spec.cluster_ip
    assert seen["WEB_API_SERVICE_PORT_HTTP"] == "80"
    assert seen["WEB_API_PORT"] == f"tcp://{web.spec.cluster_ip}:80"


_VOLUMES_SCRIPT = """
import json, os, pathlib
def read(p):
    return pathlib.Path(p).read_text()
out = {
    "config": read("/etc/app/level"),
    "single_file": read("/opt/settings/level.txt"),
    "secret": sorted(os.listdir("/etc/creds")),
    "renamed": read("/etc/creds/pw.txt"),
    "shared": read("/work/from-init"),
    "labels": read("/etc/podinfo/labels"),
    "token": len(read("/var/run/secrets/kubernetes.io/serviceaccount/token")) > 100,
    "ca": read("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt").startswith("-----BEGIN CERTIFICATE"),
    "namespace": read("/var/run/secrets/kubernetes.io/serviceaccount/namespace"),
}
try:
    pathlib.Path("/etc/app/new").write_text("x")
    out["config_writable"] = True
except OSError:
    out["config_writable"] = False
print(json.dumps(out))
"""


def test_volumes_appear_at_their_mount_paths(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "app"}, "data": {"level": "info"}}
    )
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "pw", "user": "u"}}
    )
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": "vols", "labels": {"team": "ml"}},
            "spec": {
                "volumes": [
                    {"name": "app", "configMap": {"name": "app"}},
                    {
                        "name": "creds",
                        "secret": {"secretName": "creds", "items": [{"key": "password", "path": "pw.txt"}]},
                    },
                    {"name": "work", "emptyDir": {}},
                    {
                        "name": "podinfo",
                        "downwardAPI": {
                            "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                        },
                    },
                ],
                "initContainers": [
                    {
                        "name": "prepare",
                        "image": SHELL,
                        "command": ["sh", "-c", "echo -n hi > /work/from-init"],
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                    }
                ],
                "containers": [
                    {
                        "name": "main",
                        "image": PYTHON,
                        "command": ["python3", "-c", _VOLUMES_SCRIPT],
                        "volumeMounts": [
                            {"name": "app", "mountPath": "/etc/app"},
                            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                            {"name": "work", "mountPath": "/work"},
                            {"name": "podinfo", "mountPath": "/etc/podinfo"},
                            {"name": "app", "mountPath": "/opt/settings/level.txt", "subPath": "level"},
                        ],
                    }
                ],
            },
        },
    )

    assert kube.exit_code(pod) == 0, kube.logs(namespace, "vols")
    seen = json.loads(kube.logs(namespace, "vols"))
    assert seen == {
        "config": "info",
        "secret": ["pw.txt"],
        "renamed": "pw",
        "shared": "hi",
        "labels": 'team="ml"',
        "token": True,
        "ca": True,
        "namespace": namespace,
        "config_writable": False,
        "single_file": "info",
    }
    init = pod.status.init_container_statuses[0]
    assert (init.state.terminated.exit_code, init.state.terminated.reason) == (0, "Completed")
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions["Initialized"] == "True"


_GRACEFUL = """
import signal, sys, time
def stop(signum, frame):
    time.sleep(1)
    with open("/dev/termination-log", "w") as f:
        f.write("got SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("serving", flush=True)
while True:
    time.sleep(0.2)
"""


def _last_status_before_deletion(kube: Kube, namespace: str, name: str, grace: int) -> tuple[Any, float]:
    """Delete the pod and follow it until it is gone: its last status and how long that took."""
    stream = watch.Watch()
    last = None
    started = time.monotonic()
    kube.core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace)
    for event in stream.stream(
        kube.core.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        timeout_seconds=grace + 30,
    ):
        if event["type"] == "DELETED":
            stream.stop()
            return event["object"].status, time.monotonic() - started
        last = event["object"].status
    pytest.fail(f"pod {name} not deleted within {grace + 30}s; last status {last}")


def _running(kube: Kube, namespace: str, name: str, output: str = "serving") -> bool:
    """Whether the pod's container runs and has printed `output` (logs only exist once it started)."""
    status = _container(kube, namespace, name)
    return bool(status and status.state.running) and output in kube.logs(namespace, name)


def test_deletion_is_graceful(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "polite"},
            "spec": {
                "terminationGracePeriodSeconds": 20,
                "containers": [{"name": "main", "image": PYTHON, "command": ["python3", "-c", _GRACEFUL]}],
            },
        },
    )
    kube.wait(lambda: _running(kube, namespace, "polite"), timeout=60, what="pod polite to run")

    status, took = _last_status_before_deletion(kube, namespace, "polite", grace=20)

    terminated = status.container_statuses[0].state.terminated
    assert terminated is not None, status.container_statuses[0].state
    assert (terminated.exit_code, terminated.message) == (0, "got SIGTERM")
    assert 1 <= took < 20  # the handler's second, not the whole grace period


def test_grace_period_ends_in_sigkill(kube: Kube, namespace: str) -> None:
    command = ["sh", "-c", "trap '' TERM; echo serving; while true; do sleep 0.2; done"]
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "stubborn"},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "main", "image": SHELL, "command": command}],
            },
        },
    )
    kube.wait(lambda: _running(kube, namespace, "stubborn"), timeout=60, what="pod stubborn to run")

    status, took = _last_status_before_deletion(kube, namespace, "stubborn", grace=2)

    terminated = status.container_statuses[0].state.terminated
    assert terminated is not None
    assert terminated.exit_code == 137
    assert took >= 2


_FLAKY_HEALTH = """
import http.server, time
started = time.monotonic()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if time.monotonic() - started < 3 else 500)
        self.end_headers()
    def log_message(self, *args):
        pass
print("up", flush=True)
http.server.HTTPServer(("", 8080), Handler).serve_forever()
"""


def test_liveness_failure_restarts_the_container(kube: Kube, namespace: str) -> None:
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2}
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "flaky"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": PYTHON,
                        "command": ["python3", "-c", _FLAKY_HEALTH],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "livenessProbe": probe,
                    }
                ],
            },
        },
    )

    def restarted() -> Any:
        status = _container(kube, namespace, "flaky")
        return status if status and status.restart_count >= 1 and status.last_state.terminated else None

    status = kube.wait(restarted, timeout=90, what="a liveness restart")
    assert status.last_state.terminated.exit_code != 0
    assert _status(kube, namespace, "flaky").phase == "Running"
    previous = kube.kubectl("logs", "-n", namespace, "flaky", "--previous").stdout
    assert previous == "up\n"
    events = kube.core.list_namespaced_event(namespace, field_selector="involvedObject.name=flaky").items
    assert "Unhealthy" in {e.reason for e in events}


_COUNTING = """
import pathlib, sys
counter = pathlib.Path("/state/attempts")
attempt = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(attempt))
print(f"attempt {attempt}")
sys.exit(0 if attempt >= 2 else 3)
"""


def test_on_failure_restarts_until_success(kube: Kube, namespace: str) -> None:
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": "retry"},
            "spec": {
                "restartPolicy": "OnFailure",
                "volumes": [{"name": "state", "emptyDir": {}}],
                "containers": [
                    {
                        "name": "main",
                        "image": PYTHON,
                        "command": ["python3", "-c", _COUNTING],
                        "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                    }
                ],
            },
        },
    )

    status = pod.status.container_statuses[0]
    assert pod.status.phase == "Succeeded"
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 3
    assert kube.logs(namespace, "retry") == "attempt 2\n"
    assert kube.kubectl("logs", "-n", namespace, "retry", "--previous").stdout == "attempt 1\n"


def test_memory_limit_is_enforced(kube: Kube, namespace: str) -> None:
    script = "import time; hog = bytearray(300 * 1024 * 1024); print('allocated', flush=True); time.sleep(30)"
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": "hog"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": PYTHON,
                        "command": ["python3", "-c", script],
                        "resources": {"limits": {"memory": "64Mi"}},
                    }
                ]
            },
        },
    )

    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


def test_kubectl_logs_follow_streams_until_the_container_ends(kube: Kube, namespace: str) -> None:
    command = ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.5; done"]
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "ticker"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": SHELL, "command": command}],
            },
        },
    )
    kube.wait(
        lambda: (s := _container(kube, namespace, "ticker")) and (s.state.running or s.state.terminated),
        timeout=60,
        what="pod ticker to start",
    )

    followed = kube.kubectl("logs", "-f", "-n", namespace, "ticker").stdout

    assert followed.splitlines() == [f"line {i}" for i in range(1, 6)]


def test_readiness_probe_gates_the_ready_condition(kube: Kube, namespace: str) -> None:
    server = (
        "import http.server; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=8080)"
    )
    never_ready = {"httpGet": {"path": "/", "port": 9999}, "periodSeconds": 1}
    ready = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    for name, probe in (("good", ready), ("bad", never_ready)):
        kube.core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": PYTHON,
                            "command": ["python3", "-c", server],
                            "workingDir": "/tmp",
                            "readinessProbe": probe,
                        }
                    ]
                },
            },
        )

    def conditions(name: str) -> dict[str, str]:
        return {c.type: c.status for c in _status(kube, namespace, name).conditions or []}

    kube.wait(lambda: conditions("good").get("Ready") == "True", timeout=60, what="pod good to turn Ready")
    kube.wait(lambda: _status(kube, namespace, "bad").phase == "Running", timeout=60, what="pod bad to run")
    time.sleep(3)
    assert conditions("bad")["Ready"] == "False"
    assert conditions("bad")["ContainersReady"] == "False"
    assert _container(kube, namespace, "bad").ready is False


def test_project_image_runs_as_non_root(kube: Kube, namespace: str) -> None:
    if not kube.local:
        pytest.skip("loopwright/* images are built for kind separately; this checks the local mapping")
    script = "import getpass, os, loopwright; print(os.getuid(), getpass.getuser())"
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": "nonroot"},
            "spec": {
                "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True},
                "containers": [
                    {
                        "name": "main",
                        "image": "loopwright/operator:0.1.0",
                        "command": ["python", "-c", script],
                    }
                ],
            },
        },
    )

    assert kube.exit_code(pod) == 0, kube.logs(namespace, "nonroot")
    assert kube.logs(namespace, "nonroot") == "65532 nonroot\n"


_COUNTER = """
import time
for i in range(8):
    print(i, flush=True)
    time.sleep(1)
"""


def test_restarted_node_agent_adopts_running_containers(kube: Kube, namespace: str) -> None:
    if not kube.local:
        pytest.skip("kills and restarts the local cluster's node agent")
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "survivor"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": PYTHON, "command": ["python3", "-c", _COUNTER]}],
            },
        },
    )
    kube.wait(lambda: _running(kube, namespace, "survivor", "1\n"), timeout=60, what="pod survivor to count")

    pid_file = REPO / ".cluster" / "run" / "nodeagent.pid"
    os.kill(json.loads(pid_file.read_text())["pid"], signal.SIGKILL)  # a crash: no chance to clean up
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "cluster" / "cluster.py"), "up"],
        check=True,
        capture_output=True,
        timeout=120,
    )

    def finished() -> Any:
        status = _status(kube, namespace, "survivor")
        return status if status.phase in {"Succeeded", "Failed"} else None

    status = kube.wait(finished, timeout=60, what="pod survivor to finish")
    container = status.container_statuses[0]
    assert (status.phase, container.restart_count) == ("Succeeded", 0)
    assert container.state.terminated.exit_code == 0
    assert kube.logs(namespace, "survivor").split() == [str(i) for i in range(8)]
