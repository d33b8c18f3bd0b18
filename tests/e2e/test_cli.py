"""kubectl loopwright against a real cluster: the tree of a real canary, promote and abort from the
plugin, the registry table, and RBAC refusing a user who may only read."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import deployment_support as lw

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

ANALYSIS = {"interval": "2s", "failureLimit": 1, "minRequests": 5, "metrics": {"errorRate": {"max": 0.01}}}


def plugin(namespace: str, *args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    """The plugin as kubectl runs it: a new process, with the user's kubeconfig."""
    env = {**os.environ, "NO_COLOR": "1", **({"KUBECONFIG": kubeconfig} if kubeconfig else {})}
    return subprocess.run(
        [sys.executable, "-m", "loopwright.cli", "-n", namespace, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_plugin_follows_and_drives_a_real_canary(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    lw.register(kube, s3, namespace, model="fraud", version=1, kind="good")
    rollout = {"steps": [{"weight": 50}], "analysis": ANALYSIS}  # no pause: holds until promoted
    kube.custom.create_namespaced_custom_object(
        lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment("fraud", model="fraud", rollout=rollout)
    )
    lw.wait_serving(kube, namespace, "fraud", timeout=120)
    lw.register(kube, s3, namespace, model="fraud", version=2, kind="good")
    lw.wait_phase(kube, namespace, "fraud", "Paused", timeout=120)

    shown = plugin(namespace, "get", "fraud")
    assert shown.returncode == 0, shown.stderr
    # The verdict is appended once the canary's first analysis check has run (every 2 s).
    headline = r"^Rollout fraud: Paused · canary fraud-v2 at \d+%( · analysis (Pass|Inconclusive))?$"
    assert re.search(headline, shown.stdout, re.M), shown.stdout
    canary = re.search(
        r"^  ├─\S fraud-v2 +canary +\d/1 ready .*step 1/1 · weight \d+% of 50% · holds until promoted$",
        shown.stdout,
        re.M,
    )
    assert canary, shown.stdout

    promoted = plugin(namespace, "promote", "fraud")
    assert promoted.returncode == 0, promoted.stderr
    assert '  wrote spec.rollout.promote = {"version": 2}' in promoted.stdout
    assert lw.get(kube, namespace, "deployments", "fraud")["spec"]["rollout"]["promote"] == {"version": 2}
    kube.wait(
        lambda: (
            (lw.get(kube, namespace, "deployments", "fraud")["status"].get("stable") or {}).get("version")
            == 2
        ),
        timeout=120,
        what="version 2 promoted from the plugin",
        interval=1,
    )

    lw.register(kube, s3, namespace, model="fraud", version=3, kind="good")
    kube.wait(
        lambda: (
            (lw.get(kube, namespace, "deployments", "fraud")["status"].get("canary") or {}).get("version")
            == 3
        ),
        timeout=120,
        what="version 3 as the canary",
        interval=1,
    )
    aborted = plugin(namespace, "abort", "fraud")
    assert aborted.returncode == 0, aborted.stderr
    status = lw.wait_phase(kube, namespace, "fraud", "RolledBack", timeout=120)["status"]
    assert status["rejectedVersions"] == [3]
    assert status["stable"]["version"] == 2

    table = plugin(namespace, "versions", "fraud", "-o", "json")
    assert table.returncode == 0, table.stderr
    rows = {r["name"]: r for r in json.loads(table.stdout)}
    assert set(rows) == {"fraud-v1", "fraud-v2", "fraud-v3"}
    kube.wait(
        lambda: (
            "production"
            in (lw.get(kube, namespace, "modelversions", "fraud-v2")["status"].get("aliases") or ())
        ),
        timeout=60,
        what="production on fraud-v2",
    )
    missing = plugin(namespace, "get", "nope")
    assert missing.returncode == 1
    assert missing.stderr == f'error: no model "nope" in namespace "{namespace}" (models here: fraud)\n'
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "fraud")


def _reader_kubeconfig(kube: Any, namespace: str, path: Path) -> str:
    """A kubeconfig of a ServiceAccount that may read our kinds in ``namespace`` and nothing else."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    kube.rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [lw.GROUP], "resources": ["*"], "verbs": ["get", "list", "watch"]}],
        },
    )
    kube.rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = kube.core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    if cluster.get("certificate-authority"):  # a path relative to the admin's kubeconfig
        cluster["certificate-authority"] = str(
            Path(kube.kubeconfig).parent / cluster["certificate-authority"]
        )
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "reader",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            k: v
                            for k, v in cluster.items()
                            if k in ("server", "certificate-authority-data", "certificate-authority")
                        },
                    }
                ],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [
                    {"name": "reader", "context": {"cluster": "c", "user": "reader", "namespace": namespace}}
                ],
            }
        )
    )
    return str(path)


def test_a_user_who_may_only_read_is_refused_in_one_line(
    kube: Any, crds: Any, namespace: str, tmp_path: Path
) -> None:
    kube.custom.create_namespaced_custom_object(
        lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment("fraud", model="fraud", rollout={})
    )
    config = _reader_kubeconfig(kube, namespace, tmp_path / "reader")
    shown = plugin(namespace, "get", "fraud", kubeconfig=config)
    assert shown.returncode == 0, shown.stderr
    refused = plugin(namespace, "promote", "fraud", "--version", "2", kubeconfig=config)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr == (
        f'error: forbidden by RBAC: deployments.loopwright.dev "fraud" is forbidden: User '
        f'"system:serviceaccount:{namespace}:reader" cannot patch resource "deployments" in API group '
        f'"loopwright.dev" in the namespace "{namespace}"\n'
    )
    assert "promote" not in lw.get(kube, namespace, "deployments", "fraud")["spec"]["rollout"]
