"""The generated CRDs: current on disk, structural, described, and usable by kubectl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopwright.api import crdgen
from loopwright.api.deployment import DeploymentSpec
from loopwright.api.kinds import ALL_KINDS, Kind

REPO = Path(__file__).resolve().parents[2]
_FORBIDDEN = ("$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "title", "uniqueItems", "const", "examples")


def _schema(kind: Kind) -> dict[str, Any]:
    return crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _all_nodes() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for kind in ALL_KINDS:
        for path, node in _nodes(_schema(kind)):
            yield kind.kind, path, node


def test_committed_crds_are_current() -> None:
    assert crdgen.stale(REPO / "crds") == [], "run `make crds` and commit crds/"


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    target = tmp_path / "deployments.loopwright.dev.yaml"
    target.write_text(target.read_text().replace("mldeploy", "deploy"))
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_names_and_subresources(kind: Kind) -> None:
    crd = yaml.safe_load((REPO / "crds" / f"{kind.plural}.loopwright.dev.yaml").read_text())
    assert crd["metadata"]["name"] == f"{kind.plural}.loopwright.dev"
    names = crd["spec"]["names"]
    assert names["categories"] == ["loopwright"]
    assert names["shortNames"]
    assert "deploy" not in names["shortNames"]
    assert "ds" not in names["shortNames"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["served"]
    assert version["storage"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    if kind.kind == "Deployment":
        # `kubectl scale mld`: the paths must exist in the schema, the selector as a string.
        assert version["subresources"] == {"status": {}, "scale": {
            "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector"}}
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        assert spec["replicas"]["type"] == status["replicas"]["type"] == "integer"
        assert status["selector"]["type"] == "string"
    else:
        assert version["subresources"] == {"status": {}}
    assert status["observedGeneration"]["type"] == "integer"
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status", "reason", "lastTransitionTime"}
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_custom_deployment_never_shadows_apps_deployment() -> None:
    names = crdgen.crd(next(k for k in ALL_KINDS if k.kind == "Deployment"))["spec"]["names"]
    assert names["shortNames"] == ["mldeploy", "mld"]


def test_schemas_are_structural() -> None:
    for kind, path, node in _all_nodes():
        where = f"{kind}{path}"
        assert not set(_FORBIDDEN) & set(node), f"{where}: non-structural keys {set(_FORBIDDEN) & set(node)}"
        typed = (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{where}: no type"
        assert not ("properties" in node and "additionalProperties" in node), where
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, where
            assert "minimum" in node, where


def test_every_field_is_described() -> None:
    """kubectl explain must teach every field."""
    for kind, path, node in _all_nodes():
        if path in ("", ".apiVersion", ".kind", ".metadata") or path.endswith(("[]", "{}")):
            continue
        assert node.get("description", "").strip(), f"{kind}{path}: no description"


def test_cel_cost_is_bounded() -> None:
    """The API server estimates CEL cost from maxItems/maxLength/maxProperties: every list, map and
    string of a spec must be bounded, or rules over them are refused at CRD creation."""
    for kind, path, node in _all_nodes():
        if not path.startswith(".spec"):
            continue
        if node.get("type") == "array":
            assert "maxItems" in node, f"{kind}{path}: no maxItems"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{kind}{path}: no maxProperties"
        if node.get("type") == "string":
            assert "maxLength" in node or "enum" in node, f"{kind}{path}: no maxLength"


def test_list_map_keys_are_required() -> None:
    for kind, path, node in _all_nodes():
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", ()))
            assert set(node["x-kubernetes-list-map-keys"]) <= required, f"{kind}{path}"


def test_every_rule_has_a_message() -> None:
    rules = [
        (kind, path, r) for kind, path, node in _all_nodes() for r in node.get("x-kubernetes-validations", ())
    ]
    assert len(rules) >= 15
    for kind, path, rule in rules:
        assert set(rule) == {"rule", "message"}, f"{kind}{path}"
        assert rule["message"], f"{kind}{path}"


def _resolve_path(root: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = root
    for part in json_path.lstrip(".").split("."):
        name = part.split("[", 1)[0]
        if node is None or name not in node.get("properties", {}):
            return None
        node = node["properties"][name]
        if "[" in part:
            node = node.get("items")
    return node


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_printer_columns_point_at_fields(kind: Kind) -> None:
    root = _schema(kind)
    columns = crdgen.crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns[-1]["name"] == "Age"
    assert any(c["name"] == "Ready" for c in columns)
    for column in columns:
        if column["jsonPath"].startswith(".metadata"):
            continue
        if "[?(" in column["jsonPath"]:
            # .status.conditions[?(@.type=="X")].field
            target = _resolve_path(root, column["jsonPath"].split("[?(")[0])
            assert target is not None
            assert target["x-kubernetes-list-map-keys"] == ["type"]
            continue
        target = _resolve_path(root, column["jsonPath"])
        assert target is not None, f"{kind.kind}: {column['jsonPath']} is not a field"


def test_defaults_round_trip_through_the_models() -> None:
    """An object holding only its required fields, defaulted by the server, equals the model's defaults."""
    spec = _schema(next(k for k in ALL_KINDS if k.kind == "Deployment"))["properties"]["spec"]
    defaults = {name: prop["default"] for name, prop in spec["properties"].items() if "default" in prop}
    model = DeploymentSpec.model_validate({"model": "m"}).to_wire()
    assert defaults["version"] == model["version"]
    assert defaults["rollout"] == model["rollout"]
    assert spec["properties"]["rollout"]["properties"]["steps"]["default"] == model["rollout"]["steps"]
