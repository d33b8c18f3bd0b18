"""kube-apiserver's admission of a custom object, emulated from a generated CRD.

Used by the unit tests until a real API server judges tests/cel_cases.py (tests/e2e
does), and handy wherever an example must be checked without a cluster. Steps, as
the API server takes them for a structural schema: defaults first, then OpenAPI
validation (strict: unknown fields are errors, as with kubectl's default), then the
``x-kubernetes-validations`` CEL rules, evaluated with cel-python. ``number`` fields
are handed to CEL as doubles, as the API server does.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

import celpy

from loopwright.api import crdgen
from loopwright.api.kinds import Kind

Node = dict[str, Any]
_MISSING = object()
_ENV = celpy.Environment()


@functools.cache
def root(kind: Kind) -> Node:
    return crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(rule))


def _defaulted(node: Node, value: Any) -> Any:
    if isinstance(value, dict) and "properties" in node:
        for name, child in node["properties"].items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = _defaulted(child, value[name])
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        value = {name: _defaulted(node["additionalProperties"], item) for name, item in value.items()}
    elif isinstance(value, list) and "items" in node:
        value = [_defaulted(node["items"], item) for item in value]
    return value


def _type_ok(node: Node, value: Any) -> bool:
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        return True
    if node.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    expected = {"object": dict, "array": list, "string": str, "boolean": bool}.get(node["type"])
    if expected is not None:
        return isinstance(value, expected)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if node["type"] == "integer" else isinstance(value, int | float)


def _bounds(node: Node, value: Any, path: str, errors: list[str]) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and (value < low or (node.get("exclusiveMinimum") and value == low)):
            relation = "greater than" if node.get("exclusiveMinimum") else "greater than or equal to"
            errors.append(f"{path}: should be {relation} {low}")
        if high is not None and (value > high or (node.get("exclusiveMaximum") and value == high)):
            errors.append(f"{path}: should be less than or equal to {high}")
    if isinstance(value, str):
        if len(value) > node.get("maxLength", len(value)) or len(value) < node.get("minLength", 0):
            errors.append(f"{path}: length out of bounds")
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{path}: should match {node['pattern']!r}")
    if isinstance(value, list | dict):
        size, low_key, high_key = (
            len(value),
            *(("minItems", "maxItems") if isinstance(value, list) else ("minProperties", "maxProperties")),
        )
        if size > node.get(high_key, size) or size < node.get(low_key, 0):
            errors.append(f"{path}: {size} entries is out of bounds")
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: unsupported value {value!r}")


def _validate(node: Node, value: Any, path: str, errors: list[str]) -> None:
    if not _type_ok(node, value):
        errors.append(f"{path}: wrong type {type(value).__name__}")
        return
    _bounds(node, value, path, errors)
    if isinstance(value, dict):
        properties = node.get("properties")
        for name in node.get("required", ()):
            if name not in value:
                errors.append(f"{path}.{name}: Required value")
        for name, child in value.items():
            if properties is not None and name in properties:
                _validate(properties[name], child, f"{path}.{name}", errors)
            elif isinstance(node.get("additionalProperties"), dict):
                _validate(node["additionalProperties"], child, f"{path}.{name}", errors)
            elif properties is not None and not node.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{name}: unknown field")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _validate(node["items"], item, f"{path}[{i}]", errors)
        list_type = node.get("x-kubernetes-list-type")
        keys = (
            [tuple(item.get(k) for k in node["x-kubernetes-list-map-keys"]) for item in value]
            if list_type == "map"
            else value
            if list_type == "set"
            else None
        )
        if keys is not None and len({repr(k) for k in keys}) != len(keys):
            errors.append(f"{path}: Duplicate value")


def _for_cel(node: Node, value: Any) -> Any:
    """The value as the API server gives it to CEL: numbers of ``number`` fields are doubles."""
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {
            k: _for_cel(props.get(k) or (extra if isinstance(extra, dict) else {}), v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_for_cel(node.get("items", {}), v) for v in value]
    if node.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _cel(node: Node, value: Any, old: Any, path: str, errors: list[str]) -> None:
    for rule in node.get("x-kubernetes-validations", ()):
        transition = "oldSelf" in rule["rule"]
        if transition and old is _MISSING:
            continue
        activation = {"self": celpy.json_to_cel(_for_cel(node, value))}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(_for_cel(node, old))
        try:
            ok = bool(_program(rule["rule"]).evaluate(activation))
        except celpy.CELEvalError as exc:  # the API server rejects on a runtime error too
            errors.append(f"{path}: {rule['message']} (evaluation error: {exc.args[0]})")
            continue
        if not ok:
            errors.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for name, child in node.get("properties", {}).items():
            if name in value:
                old_child = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
                _cel(child, value[name], old_child, f"{path}.{name}", errors)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and "properties" not in node:
            for name, item in value.items():
                old_child = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
                _cel(extra, item, old_child, f"{path}.{name}", errors)
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            _cel(node["items"], item, _MISSING, f"{path}[{i}]", errors)


def admission_errors(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """What the API server would say about creating ``obj`` (or updating ``old`` to it)."""
    schema = root(kind)
    value = _defaulted(schema, copy.deepcopy(obj))
    errors: list[str] = []
    _validate(schema, value, "", errors)
    if not errors:
        previous = _defaulted(schema, copy.deepcopy(old)) if old is not None else _MISSING
        _cel(schema, value, previous, "", errors)
    return errors


def default_errors(node: Node) -> list[str]:
    """What the API server says about a node's default when the CRD is created: it checks
    the default as written, without filling in the defaults nested below it."""
    errors: list[str] = []
    _validate(node, node["default"], "default", errors)
    _cel(node, node["default"], _MISSING, "default", errors)
    return errors


def defaulted(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with the CRD's defaults applied."""
    result: dict[str, Any] = _defaulted(root(kind), copy.deepcopy(obj))
    return result


def schema_nodes(node: Node) -> list[Node]:
    out = [node]
    for child in node.get("properties", {}).values():
        out += schema_nodes(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out += schema_nodes(node[key])
    return out
