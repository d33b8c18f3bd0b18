"""The krew manifest and the archive it points at: one self-contained file that runs the plugin."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from loopwright import __version__
from unit.cli_objects import NAMESPACE, objects
from unit.fake_kube import FakeKube

KREW = Path(__file__).resolve().parents[2] / "manifests" / "krew"


def _build_module():
    spec = importlib.util.spec_from_file_location("krew_build", KREW / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_manifest_is_a_krew_plugin_of_this_version():
    manifest = yaml.safe_load((KREW / "loopwright.yaml").read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "loopwright"
    assert manifest["spec"]["version"] == f"v{__version__}"
    for platform in manifest["spec"]["platforms"]:
        assert platform["bin"] == "kubectl-loopwright"
        assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
        assert platform["uri"].endswith(f"/v{__version__}/kubectl-loopwright-v{__version__}.tar.gz")


def test_the_archive_is_reproducible_and_runs_without_the_package(tmp_path, monkeypatch):
    build = _build_module()
    first, second = build.archive(build.zipapp()), build.archive(build.zipapp())
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["kubectl-loopwright"]
        tar.extractall(tmp_path, filter="data")
    plugin = tmp_path / "kubectl-loopwright"
    assert os.access(plugin, os.X_OK)
    fake = FakeKube(objects(), namespace=NAMESPACE)
    with fake.running():
        env = {"KUBECONFIG": str(fake.kubeconfig(tmp_path / "kubeconfig")), "PATH": os.environ["PATH"],
               "NO_COLOR": "1"}
        # -I: isolated, no site-packages: everything the plugin needs is in the file.
        done = subprocess.run([sys.executable, "-I", str(plugin), "get", "churn"], capture_output=True,
                              text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "churn-v4" in done.stdout
    assert "DriftPolicy" in done.stdout
