"""Admission and the operator agree: specs generated from the CRD schemas, kept when the API server
would admit them (tests/crd_admission.py: defaults, OpenAPI, CEL), never make the operator raise.

Each admitted spec either parses (and then every value the operator goes on to use works: the
durations, the schedule, the child manifests it builds) or is refused by the same models with a
message that names the field (the InvalidSpec a controller publishes once, as Stalled).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from crd_admission import admission_errors, defaulted, root
from loopwright.api.common import API_VERSION, parse_duration
from loopwright.api.dataset import DatasetSpec
from loopwright.api.deployment import DeploymentSpec
from loopwright.api.driftpolicy import DriftPolicySpec
from loopwright.api.kinds import ALL_KINDS, MODEL_VERSION, Kind
from loopwright.api.pipeline import TrainingPipelineSpec
from loopwright.api.schema import DatasetSchema
from loopwright.core.training import triggers
from loopwright.operator.builders import autoscaler, jobs
from loopwright.operator.builders import predictor as build
from loopwright.operator.builders.common import Owner
from loopwright.operator.controllers._common import parse_spec

CAP = 3
"""Lists and maps are generated with at most this many entries (the rules are per entry)."""
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what JSON numbers decode to in the API server
_SCALARS = st.one_of(st.text(max_size=12), _INT64, st.floats(allow_nan=False, allow_infinity=False),
                     st.booleans(), st.none())


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    longest = node.get("maxLength", 40)
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: len(s) <= longest)
    return st.text(min_size=node.get("minLength", 0), max_size=min(longest, 40))


def _from_node(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a CRD schema node describes (its CEL rules are left to the admission emulator)."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(min_value=-5, max_value=10**6), _string(node))
    kind = node.get("type")
    if kind is None:
        return _SCALARS
    if kind == "string":
        return _string(node)
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=node.get("minimum", -(10**6)), max_value=node.get("maximum", 10**6))
    if kind == "number":
        return st.floats(min_value=node.get("minimum"), max_value=node.get("maximum"), allow_nan=False,
                         allow_infinity=False, exclude_min=bool(node.get("exclusiveMinimum")),
                         exclude_max=bool(node.get("exclusiveMaximum")))
    if kind == "array":
        return st.lists(_from_node(node["items"]), min_size=node.get("minItems", 0),
                        max_size=max(min(node.get("maxItems", CAP), CAP), node.get("minItems", 0)))
    if "properties" in node:
        required = set(node.get("required", ()))
        return st.fixed_dictionaries(
            {k: _from_node(v) for k, v in node["properties"].items() if k in required},
            optional={k: _from_node(v) for k, v in node["properties"].items() if k not in required})
    extra = node.get("additionalProperties")
    return st.dictionaries(st.text(min_size=1, max_size=12), _from_node(extra) if isinstance(extra, dict)
                           else _SCALARS, max_size=min(node.get("maxProperties", CAP), CAP))


def _spec_strategy(kind: Kind) -> st.SearchStrategy[dict[str, Any]]:
    return _from_node(root(kind)["properties"]["spec"])


SERVED = build.Served(model="m", version=2, model_version="m-v2", artifact_uri="s3://bucket/m",
                      artifact_sha256="0" * 64, profile_uri="s3://bucket/p", profile_sha256=None)
SETTINGS = jobs.JobSettings(image="i", s3_endpoint=None, credentials_secret="creds")
SCHEMA = DatasetSchema.model_validate({"label": {"name": "y", "task": "classification"},
                                       "columns": [{"name": "x", "type": "numeric"}]})


def _durations(model: Any) -> list[str]:
    """Every Duration value in a parsed spec (the fields whose pattern is the duration pattern)."""
    found: list[str] = []
    if isinstance(model, list):
        for item in model:
            found += _durations(item)
    elif isinstance(model, BaseModel):
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, str) and any(getattr(m, "pattern", None) == r"^([0-9]+(ms|s|m|h))+$"
                                              for m in field.metadata):
                found.append(value)
            else:
                found += _durations(value)
    return found


def _use(kind: Kind, spec: Any) -> None:
    """What the operator does with a parsed spec, minus the cluster."""
    for text in _durations(spec):
        parse_duration(text)
    owner = Owner(kind=kind.kind, name="x", uid="u", namespace="ns")
    if isinstance(spec, DeploymentSpec):
        build.deployment(owner=owner, spec=spec, served=SERVED, replicas=1,
                         settings=build.PodSettings(image="i", s3_endpoint=None, credentials_secret=None,
                                                    artifact_bucket="bucket"))
        if spec.autoscaling is not None:
            autoscaler.autoscaler(owner=owner, model=spec.model, version=1, autoscaling=spec.autoscaling)
    elif isinstance(spec, TrainingPipelineSpec):
        jobs.training_job(jobs.RunInputs(
            namespace="ns", owner=owner, spec=spec, dataset_uri="s3://bucket/d", dataset_format="csv",
            dataset_digest="sha256:" + "0" * 64, schema=SCHEMA, credentials_secret=None,
            output_prefix="s3://bucket/o", labels={}, settings=SETTINGS), name="x-1")
        if spec.triggers.schedule:
            triggers.next_schedule(spec.triggers.schedule, after=datetime(2026, 12, 2, tzinfo=UTC))
    elif isinstance(spec, DatasetSpec):
        jobs.profiling_job(namespace="ns", name="x-p", owner=owner, spec=spec, output_prefix="s3://bucket/o",
                           labels={}, settings=SETTINGS)
    elif isinstance(spec, DriftPolicySpec):
        parse_duration(spec.interval)


FUZZED = [k for k in ALL_KINDS if k is not MODEL_VERSION]  # immutable, written by the operator itself


@pytest.mark.parametrize("kind", FUZZED, ids=lambda k: k.kind)
def test_admitted_specs_parse_and_work_or_name_the_field(kind: Kind) -> None:
    admitted: list[int] = []

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(_spec_strategy(kind))
    def check(spec: dict[str, Any]) -> None:
        obj = {"apiVersion": API_VERSION, "kind": kind.kind, "metadata": {"name": "x"}, "spec": spec}
        if admission_errors(kind, obj):
            return
        admitted.append(1)
        parsed = parse_spec(kind, defaulted(kind, obj)["spec"])
        if isinstance(parsed, str):
            assert parsed.startswith("spec."), parsed  # InvalidSpec names the field
            return
        _use(kind, parsed)

    check()
    assert admitted, f"no generated {kind.kind} spec was admitted: the generator needs work"


PIPELINE = {"datasetRef": {"name": "d"}, "model": {"name": "m", "estimator": "LogisticRegression"}}


@pytest.mark.parametrize(("path", "value", "field"), [
    ("triggers.schedule", "61 * * * *", "spec.triggers.schedule"),  # found by the fuzz: croniter refused it
    ("triggers.schedule", "0\x850 0 0 0", "spec.triggers.schedule"),
    ("triggers.schedule", "0 0 0 0 0", "spec.triggers.schedule"),
    ("triggers.cooldown", "99999999999h", "spec.triggers.cooldown"),  # found by the fuzz: OverflowError
    ("triggers.cooldown", "8785h", "spec.triggers.cooldown"),
    ("job.resources", {"limits": {"memory": "-1Gi"}}, "spec.job.resources.limits.memory"),
])
def test_what_the_schema_admits_but_the_operator_cannot_use_is_named(path: str, value: Any,
                                                                     field: str) -> None:
    spec = copy.deepcopy(PIPELINE)
    head, leaf = path.split(".")
    spec[head] = {leaf: value}
    obj = {"apiVersion": API_VERSION, "kind": "TrainingPipeline", "metadata": {"name": "x"}, "spec": spec}
    kind = next(k for k in ALL_KINDS if k.kind == "TrainingPipeline")
    assert admission_errors(kind, obj) == []  # the API server lets it in
    parsed = parse_spec(kind, defaulted(kind, obj)["spec"])
    assert isinstance(parsed, str)
    assert parsed.startswith(field), parsed

