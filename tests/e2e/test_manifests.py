"""Every shipped manifest is accepted by a real API server (server-side dry run).

A server-side dry run goes through the whole admission chain (schema, CEL rules of our CRDs,
Pod Security admission of the namespace, defaulting) without persisting anything, so it
proves more than `kubectl kustomize` while leaving the cluster as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import Kube
from loopwright.api.kinds import ALL_KINDS

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"


def _dry_run(kube: Kube, *args: str) -> list[str]:
    result = kube.kubectl("apply", "--server-side", "--dry-run=server", *args, check=False)
    assert result.returncode == 0, f"kubectl apply {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert all(line.endswith("(server dry run)") for line in lines), result.stdout
    return lines


def _applied(lines: list[str], kind_prefix: str) -> int:
    return sum(line.startswith(kind_prefix) for line in lines)


def test_base_applies(kube: Kube) -> None:
    # The CRDs may already be installed by another field manager (the e2e fixture, `make
    # apply-crds`): taking them over is what an install does.
    lines = _dry_run(kube, "--force-conflicts", "-k", str(MANIFESTS / "base"))
    assert _applied(lines, "customresourcedefinition.apiextensions.k8s.io/") == len(ALL_KINDS)
    assert "deployment.apps/loopwright-operator serverside-applied (server dry run)" in lines
    role = "clusterrole.rbac.authorization.k8s.io/loopwright-operator"
    assert f"{role} serverside-applied (server dry run)" in lines


def test_kind_overlay_applies(kube: Kube) -> None:
    # The overlay is installed (make kind-deploy): the dry run takes over the fields the tests
    # changed (the operator's scope) so that everything is validated, and persists nothing.
    lines = _dry_run(kube, "--force-conflicts", "-k", str(MANIFESTS / "overlays" / "kind"))
    for name in ("deployment.apps/s3", "service/s3", "job.batch/s3-bucket", "secret/loopwright-s3"):
        assert f"{name} serverside-applied (server dry run)" in lines


def test_samples_apply_with_every_cel_rule(kube: Kube, namespace: str, crds: object, tmp_path: Path) -> None:
    """The GitOps samples, rendered by kustomize, in a namespace that exists (a dry run does not
    create the samples' own Namespace, so its objects would be refused as NotFound)."""
    rendered = kube.kubectl("kustomize", str(MANIFESTS / "samples")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "Namespace"]
    assert {d["kind"] for d in docs} == {"Dataset", "TrainingPipeline", "Deployment", "DriftPolicy"}
    for doc in docs:
        assert doc["metadata"]["namespace"] == "loopwright-demo"
        doc["metadata"]["namespace"] = namespace
    path = tmp_path / "samples.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    lines = _dry_run(kube, "-f", str(path))
    assert len(lines) == 4


def test_an_invalid_sample_is_refused(kube: Kube, namespace: str, crds: object, tmp_path: Path) -> None:
    """The dry run really validates: a DriftPolicy with driftShare 2 is refused by the schema."""
    doc = yaml.safe_load((MANIFESTS / "samples" / "driftpolicy.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["driftShare"] = 2
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = kube.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(path), check=False)
    assert result.returncode != 0
    assert "driftShare" in result.stderr
