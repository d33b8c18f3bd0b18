"""The shipped manifests, checked without a cluster.

The ClusterRole is compared with the operator's code: every Kubernetes API call found in
operator/loopwright must be allowed, and every rule must be used by some call (or be one of
the few that kopf or server-side apply need, each with its reason below). So a controller that
starts calling a new verb fails here rather than with a 403 in someone's cluster.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopwright.api import crdgen
from loopwright.api.dataset import DatasetSpec
from loopwright.api.deployment import DeploymentSpec
from loopwright.api.driftpolicy import DriftPolicySpec
from loopwright.api.kinds import ALL_KINDS
from loopwright.api.pipeline import TrainingPipelineSpec
from loopwright.operator import config

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CODE = REPO / "operator" / "loopwright"
GROUP = "loopwright.dev"
OUR_KINDS = {"DATASET": "datasets", "TRAINING_PIPELINE": "trainingpipelines",
             "MODEL_VERSION": "modelversions", "DEPLOYMENT": "deployments", "DRIFT_POLICY": "driftpolicies",
             "ANALYSIS_TEMPLATE": "analysistemplates"}
# Controllers import their own kind as KIND (`from loopwright.api.kinds import DATASET as KIND`).
TYPED_APIS = {"core": "", "batch": "batch", "apps": "apps", "PolicyV1Api": "policy"}
# The runtime client's resources (loopwright.operator.runtime.client) and what its verbs ask of RBAC.
RESOURCES = {"JOBS": ("batch", "jobs"), "PODS": ("", "pods"), "SECRETS": ("", "secrets"),
             "SERVICES": ("", "services"), "EVENTS": ("", "events"), "WORKLOADS": ("apps", "deployments"),
             "DISRUPTION_BUDGETS": ("policy", "poddisruptionbudgets"),
             "AUTOSCALERS": ("autoscaling", "horizontalpodautoscalers"),
             "HTTPROUTES": ("gateway.networking.k8s.io", "httproutes")}
CLIENT_VERBS = {"get": ("get",), "list": ("list",), "create": ("create",),
                "create_or_adopt": ("create", "get"),
                "patch": ("patch",), "patch_status": ("patch",), "apply": ("patch",), "delete": ("delete",),
                "scale": ("patch",)}
VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "patch": "patch",
         "delete": "delete", "replace": "update"}
# Needed, but not visible as a call in our code.
IMPLICIT = {
    # kopf: resource discovery and its namespace observer.
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"), ("", "namespaces", "watch"),
    # kopf posts Events itself (core v1) and may patch a repeated one.
    ("", "events", "patch"),
    # Server-side apply of an object that does not exist yet creates it, and the API server
    # authorizes that as `create` (tried: an apply with only `patch` is refused "cannot create").
    ("apps", "deployments", "create"), ("", "services", "create"),
    ("policy", "poddisruptionbudgets", "create"), ("gateway.networking.k8s.io", "httproutes", "create"),
    ("autoscaling", "horizontalpodautoscalers", "create"),
    # ownerReferences with blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
    *((GROUP, f"{kind}/finalizers", "update") for kind in ("datasets", "trainingpipelines", "modelversions",
                                                            "deployments")),
}

Rule = tuple[str, str, str]  # apiGroup, resource, verb


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _rules(name: str) -> set[Rule]:
    role = next(d for d in _docs(MANIFESTS / "base" / "rbac" / "role.yaml" if name == "loopwright-operator"
                                 else MANIFESTS / "base" / "rbac" / "secret_reader_role.yaml"))
    assert role["metadata"]["name"] == name
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def _plural(snake: str) -> str:
    compact = snake.replace("_", "")
    return compact if compact.endswith("s") else compact + "s"


def _sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(CODE.rglob("*.py")):
        # The clients themselves: their callers are what counts.
        if path not in (CODE / "operator" / "kube.py", CODE / "operator" / "runtime" / "client.py"):
            yield path, path.read_text()


def _calls() -> dict[Rule, list[str]]:
    """Every API request the code makes, as RBAC terms, with where it is made."""
    found: dict[Rule, list[str]] = {}

    def add(rule: Rule, where: str) -> None:
        found.setdefault(rule, []).append(where)

    typed = re.compile(r"(?:kube\.(core|batch|apps)\(\)|(PolicyV1Api)\((?:[^()]|\([^()]*\))*\))\.\s*"
                       r"(read|list|create|patch|delete|replace)_namespaced_(\w+?)\(")
    helper = re.compile(r"kube\.(get_object|list_objects|create_object)\((\w+)")
    custom = re.compile(r"custom_objects\(\)\.(get|list|create|patch|delete|replace)_namespaced_custom_object"
                        r"(_status)?\(\s*([\w.]+)")
    # Resources of our kinds named once (`PIPELINES = resource(TRAINING_PIPELINE)`) and imported elsewhere.
    resources = re.compile(r"^([A-Z_]+) = resource\(([A-Z_]+)\)", re.M)
    named = {alias: kind for _, text in _sources() for alias, kind in resources.findall(text)
             if kind in OUR_KINDS}
    client = re.compile(r"\b(?:api|client)\.(" + "|".join(CLIENT_VERBS) + r")\(\s*(\w+)")
    aliases = re.compile(r"^(\w+) = resource\((\w+)\)", re.M)
    kopf_on = re.compile(r"@?kopf\.(?:on\.\w+|daemon|timer|index)\(([^)]*)\)", re.S)
    for path, text in _sources():
        where = str(path.relative_to(REPO))
        own_kind = re.search(r"import (\w+) as KIND\b", text)
        own = OUR_KINDS[own_kind.group(1)] if own_kind else None
        for api, policy, verb, method_resource in typed.findall(text):
            group = TYPED_APIS[api or policy]
            resource, sub = method_resource, ""
            for suffix in ("_status", "_scale", "_log"):
                if method_resource.endswith(suffix):
                    resource, sub = method_resource.removesuffix(suffix), "/" + suffix[1:]
            add((group, _plural(resource) + sub, VERBS[verb]), where)
        for function, kind in helper.findall(text):
            verb = {"get_object": "get", "list_objects": "list", "create_object": "create"}[function]
            # `kind` (a parameter) may be any of ours: it must be allowed for all of them.
            plurals = [OUR_KINDS[kind]] if kind in OUR_KINDS else [own] if kind == "KIND" and own \
                else list(OUR_KINDS.values())
            for plural in plurals:
                add((GROUP, plural, verb), where)
        for verb, status, first in custom.findall(text):
            sub = "/status" if status else ""
            if first.startswith("traffic.HTTPROUTE"):
                add(("gateway.networking.k8s.io", "httproutes" + sub, verb), where)
                continue
            name = first.split(".")[0]
            # `kind` (a parameter) may be any of ours: it must be allowed for all of them.
            plurals = [OUR_KINDS[name]] if name in OUR_KINDS else [own] if name == "KIND" and own \
                else list(OUR_KINDS.values()) if name == "kind" else []
            assert plurals, f"{where}: cannot tell which kind `{first}` is; teach this test"
            for plural in plurals:
                add((GROUP, plural + sub, VERBS[verb]), where)
        ours = {**named, **({"KIND": own_kind.group(1)} if own_kind else {})}
        ours.update((alias, ours.get(kind, kind)) for alias, kind in aliases.findall(text))
        # The runtime client is the operator's (the kubectl plugin has its own, with the user's rights).
        for method, res in client.findall(text) if path.is_relative_to(CODE / "operator") else ():
            sub = {"patch_status": "/status", "scale": "/scale"}.get(method, "")
            if res in RESOURCES:
                targets = [RESOURCES[res]]
            elif res == "res":  # a parameter: any of our kinds
                targets = [(GROUP, plural) for plural in OUR_KINDS.values()]
            else:
                assert ours.get(res) in OUR_KINDS, f"{where}: which resource is `{res}`? teach this test"
                targets = [(GROUP, OUR_KINDS[ours[res]])]
            for group, plural in targets:
                for verb in CLIENT_VERBS[method]:
                    add((group, plural + sub, verb), where)
        for args in kopf_on.findall(text):
            builtin = re.match(r'\s*"([\w.]*)", "v1", "(\w+)"', args)  # ("apps", "v1", "deployments")
            if '"batch"' in args and '"jobs"' in args:
                add(("batch", "jobs", "list"), where)
                add(("batch", "jobs", "watch"), where)
            elif builtin:
                add((builtin[1], builtin[2], "list"), where)
                add((builtin[1], builtin[2], "watch"), where)
            elif "KIND." in args or "DATASET." in args or "MODEL_VERSION." in args or "plural=" in args:
                name = next((n for n in OUR_KINDS if f"{n}." in args), None)
                plural = OUR_KINDS[name] if name else own
                assert plural, f"{where}: a kopf handler on an unknown resource: {args!r}"
                for verb in ("list", "watch", "patch"):  # kopf patches progress annotations
                    add((GROUP, plural, verb), where)
        if "create_namespaced_event" in text or "kopf.event" in text:
            add(("", "events", "create"), where)
    return found


def test_the_code_makes_the_calls_this_test_knows() -> None:
    calls = _calls()
    assert ("batch", "jobs", "create") in calls
    assert ("", "pods", "list") in calls
    assert (GROUP, "modelversions", "create") in calls
    assert (GROUP, "trainingpipelines", "patch") in calls


def test_every_api_call_is_allowed_by_the_cluster_role() -> None:
    allowed = _rules("loopwright-operator")
    opt_in = _rules("loopwright-operator-secrets")
    missing = {rule: where for rule, where in _calls().items() if rule not in allowed | opt_in}
    assert not missing, f"the ClusterRole misses rules the code needs: {missing}"


def test_every_rule_is_used_by_the_code() -> None:
    unused = _rules("loopwright-operator") - set(_calls()) - IMPLICIT
    assert not unused, f"rules no code uses (least privilege: remove them): {sorted(unused)}"


def test_the_cluster_role_grants_nothing_broad() -> None:
    rules = _rules("loopwright-operator")
    assert not any("*" in part for rule in rules for part in rule)
    resources = {resource for _, resource, _ in rules}
    assert not resources & {"secrets", "nodes", "clusterroles", "clusterrolebindings", "roles",
                            "rolebindings", "serviceaccounts", "pods/exec", "configmaps"}
    # Secrets only through the opt-in role, bound per namespace, and only by name.
    assert _rules("loopwright-operator-secrets") == {("", "secrets", "get")}
    bindings = _docs(MANIFESTS / "base" / "rbac" / "role_binding.yaml")
    assert [b["roleRef"]["name"] for b in bindings] == ["loopwright-operator"]


def _manager() -> dict[str, Any]:
    return _docs(MANIFESTS / "base" / "manager" / "manager.yaml")[0]


def test_operator_deployment_is_one_restricted_replica() -> None:
    deployment = _manager()
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "loopwright-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert container["envFrom"] == [{"configMapRef": {"name": "loopwright-config"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["USER"]["value"], "kopf needs a user name (getpass) for a uid without a passwd entry"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "loopwright-s3"


def test_config_map_is_a_valid_operator_configuration() -> None:
    data = _docs(MANIFESTS / "base" / "manager" / "config.yaml")[0]["data"]
    loaded = config.load(data)
    assert loaded.clusterwide
    assert str(loaded.s3_secret) == "loopwright-system/loopwright-s3"
    patch = _docs(MANIFESTS / "overlays" / "kind" / "config.yaml")[0]["data"]
    merged = config.load({**data, **patch})
    assert merged.s3_endpoint == "http://s3.loopwright-system.svc:9000"  # what tests/conftest.py expects
    assert patch["AWS_ENDPOINT_URL"] == merged.s3_endpoint


def test_one_generated_copy_of_the_crds_is_what_kustomize_installs() -> None:
    assert not crdgen.stale(), "run `make crds` and commit crds/ and manifests/argocd/"
    listed = yaml.safe_load((REPO / "crds" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (REPO / "crds").glob("*.loopwright.dev.yaml"))
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    assert "../../crds" in base["resources"]
    copies = [p for p in MANIFESTS.rglob("*.yaml") if "kind: CustomResourceDefinition" in p.read_text()]
    assert not copies, f"CRDs belong in crds/ only (generated by make crds): {copies}"


SPECS = {"Dataset": DatasetSpec, "TrainingPipeline": TrainingPipelineSpec, "Deployment": DeploymentSpec,
         "DriftPolicy": DriftPolicySpec}


def test_samples_are_a_complete_loop_that_the_models_accept() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "samples" / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"] for d in _docs(MANIFESTS / "samples" / name)]
    ours = {d["kind"]: d for d in docs if d["apiVersion"] == f"{GROUP}/v1alpha1"}
    assert set(ours) == set(SPECS)
    for kind, model in SPECS.items():
        model.model_validate(ours[kind]["spec"])
    dataset, pipeline = ours["Dataset"], ours["TrainingPipeline"]
    assert pipeline["spec"]["datasetRef"]["name"] == dataset["metadata"]["name"]
    assert ours["Deployment"]["spec"]["model"] == pipeline["spec"]["model"]["name"]
    policy = ours["DriftPolicy"]["spec"]
    assert policy["deploymentRef"]["name"] == ours["Deployment"]["metadata"]["name"]
    assert policy["actions"]["retrain"]["pipelineRef"]["name"] == pipeline["metadata"]["name"]


@pytest.mark.parametrize("target", ["base", "overlays/kind", "samples"])
def test_kustomize_builds(target: str) -> None:
    kubectl = "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else "kubectl"
    try:
        out = subprocess.run([kubectl, "kustomize", str(MANIFESTS / target)], check=True, capture_output=True,
                             text=True, timeout=60).stdout
    except FileNotFoundError:
        pytest.skip("kubectl is not installed")
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert kinds.count("Deployment") >= 1
    if target != "samples":
        assert kinds.count("CustomResourceDefinition") == len(ALL_KINDS)


def image_versions() -> dict[str, str]:
    """images/versions.env: what images/ builds, by variable name."""
    return dict(line.split("=", 1) for line in (REPO / "images" / "versions.env").read_text().splitlines()
                if line and not line.startswith("#"))


def test_kind_overlay_s3_image_is_the_version_images_build() -> None:
    """make kind-load builds versitygw at images/versions.env's version under the overlay's image name."""
    versions = image_versions()
    s3 = next(d for d in _docs(MANIFESTS / "overlays" / "kind" / "s3.yaml") if d["kind"] == "Deployment")
    (container,) = s3["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/versity/versitygw:{versions['VERSITYGW_VERSION']}"


def test_kind_overlay_metrics_server_is_restricted_and_the_version_images_build() -> None:
    """The resource metrics API on kind: the image `make kind-load` builds, the flags kind needs, no
    privileges, and the APIService that makes it metrics.k8s.io."""
    versions = image_versions()
    docs = _docs(MANIFESTS / "overlays" / "kind" / "metrics-server" / "metrics-server.yaml")
    server = next(d for d in docs if d["kind"] == "Deployment")
    pod = server["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == (
        f"registry.k8s.io/metrics-server/metrics-server:{versions['METRICS_SERVER_VERSION']}")
    assert {"--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP",
            "--cert-dir=/tmp"} <= set(container["args"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    (service,) = (d for d in docs if d["kind"] == "APIService")
    assert service["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert service["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system"}
    kustomization = yaml.safe_load((MANIFESTS / "overlays" / "kind" / "kustomization.yaml").read_text())
    assert "metrics-server" in kustomization["components"]
