"""kstatus and the Argo CD health check of manifests/argocd/argocd-cm.yaml, run in Lua 5.1 (Argo CD's
dialect), on the conditions the controllers publish.

Argo CD evaluates the script with gopher-lua (Lua 5.1) and a global ``obj``; LuaJIT through
lupa is the same language, so the verdicts here are the ones Argo CD shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import kstatus
from loopwright.api.common import ConditionStatus
from loopwright.api.kinds import ALL_KINDS
from loopwright.core import conditions
from loopwright.core.conditions import Verdict

lupa = pytest.importorskip("lupa.luajit21")

REPO = Path(__file__).resolve().parents[2]
KINDS = tuple(k.kind for k in ALL_KINDS)


def _scripts() -> dict[str, str]:
    data = yaml.safe_load((REPO / "manifests" / "argocd" / "argocd-cm.yaml").read_text())["data"]
    prefix = "resource.customizations.health.loopwright.dev_"
    return {key.removeprefix(prefix): value for key, value in data.items()}


def _health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lupa.LuaRuntime()

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([table(v) for v in value])
        return value

    runtime.globals().obj = table(obj)
    result = runtime.execute(_scripts()["Dataset"])
    return str(result["status"]), str(result["message"])


def _obj(*verdicts: tuple[str, str, str], generation: int = 2, observed: int | None = 2,
         phase: str | None = None) -> dict[str, Any]:
    """An object whose conditions were published as the controllers publish them (conditions.merge)."""
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if verdicts:
        status["conditions"] = conditions.merge(
            None, [Verdict(type=t, status=ConditionStatus(s), reason=r, message="m") for t, s, r in verdicts],
            generation=observed)
    if phase:
        status["phase"] = phase
    return {"metadata": {"name": "x", "generation": generation}, "status": status}


SERVING = ("Ready", "True", "Serving")
AS_EXPECTED = ("Degraded", "False", "AsExpected")

# (what, object, kstatus, Argo CD)
SCENARIOS = [
    ("never reconciled", {"metadata": {"name": "x", "generation": 1}}, kstatus.CURRENT, "Progressing"),
    ("an older generation observed", _obj(("Ready", "True", "Serving"), observed=1), kstatus.IN_PROGRESS,
     "Progressing"),
    ("a stable Deployment", _obj(SERVING, ("Progressing", "False", "Stable"), AS_EXPECTED, phase="Stable"),
     kstatus.CURRENT, "Healthy"),
    ("a canary in progress", _obj(SERVING, ("Progressing", "True", "CanaryStep"), AS_EXPECTED,
                                  phase="Progressing"), kstatus.IN_PROGRESS, "Progressing"),
    ("a paused canary", _obj(SERVING, ("Progressing", "True", "Paused"), AS_EXPECTED, phase="Paused"),
     kstatus.IN_PROGRESS, "Suspended"),
    ("a rolled-back canary", _obj(SERVING, ("Progressing", "False", "Stable"),
                                  ("Degraded", "True", "RolledBack"), phase="RolledBack"),
     kstatus.FAILED, "Degraded"),
    ("an aborted canary", _obj(SERVING, ("Degraded", "True", "Aborted"), phase="RolledBack"), kstatus.FAILED,
     "Degraded"),
    ("pods not ready yet", _obj(("Ready", "False", "Unavailable"), ("Degraded", "True", "Unavailable")),
     kstatus.IN_PROGRESS, "Progressing"),
    ("no version to serve yet", _obj(("Ready", "False", "NoVersion")), kstatus.IN_PROGRESS, "Progressing"),
    ("a pinned version that cannot be served", _obj(("Ready", "False", "NotServable"),
                                                   ("Degraded", "True", "NotServable"), phase="Failed"),
     kstatus.FAILED, "Degraded"),
    ("a training run in progress", _obj(("Ready", "True", "Ready"), ("Training", "True", "Running")),
     kstatus.IN_PROGRESS, "Progressing"),
    ("a pipeline between runs", _obj(("Ready", "True", "Ready"), ("Training", "False", "Completed")),
     kstatus.CURRENT, "Healthy"),
    ("a refused pipeline", _obj(("Ready", "False", "Refused")), kstatus.FAILED, "Degraded"),
    ("a pipeline waiting for data", _obj(("Ready", "False", "WaitingForData")), kstatus.IN_PROGRESS,
     "Progressing"),
    ("a pipeline whose Dataset is not applied yet", _obj(("Ready", "False", "DatasetNotFound")),
     kstatus.IN_PROGRESS, "Progressing"),
    ("a first profile", _obj(("Validated", "Unknown", "Profiling"), ("Ready", "False", "Profiling")),
     kstatus.IN_PROGRESS, "Progressing"),
    ("a new version profiled while the last serves", _obj(("Validated", "Unknown", "Profiling"),
                                                          ("Ready", "True", "Validated")),
     kstatus.IN_PROGRESS, "Progressing"),
    ("a validated Dataset", _obj(("Validated", "True", "Valid"), ("Ready", "True", "Validated")),
     kstatus.CURRENT, "Healthy"),
    ("invalid data", _obj(("Validated", "False", "AnomaliesFound"), ("Ready", "False", "InvalidData")),
     kstatus.FAILED, "Degraded"),
    ("a source out of reach (for now)", _obj(("Ready", "False", "SourceUnreachable")), kstatus.IN_PROGRESS,
     "Progressing"),
    *((f"credentials: {reason}", _obj(("Ready", "False", reason)), kstatus.FAILED, "Degraded")
      for reason in ("CredentialsNotFound", "CredentialsInvalid", "CredentialsForbidden", "AccessDenied")),
    ("an artifact being verified", _obj(("ArtifactVerified", "Unknown", "Verifying"),
                                        ("Ready", "False", "Verifying")), kstatus.IN_PROGRESS, "Progressing"),
    ("a rejected model", _obj(("Validated", "False", "ChecksFailed"), ("Ready", "False", "ChecksFailed"),
                              phase="Rejected"), kstatus.FAILED, "Degraded"),
    ("a validated model", _obj(("Ready", "True", "ChecksPassed")), kstatus.CURRENT, "Healthy"),
    ("an invalid spec", _obj(("Ready", "False", "InvalidSpec")), kstatus.FAILED, "Degraded"),
    ("a drift check", _obj(("Ready", "True", "Checked"), ("DriftDetected", "False", "NoDrift")),
     kstatus.CURRENT, "Healthy"),
]
_ARGO = {kstatus.CURRENT: "Healthy", kstatus.IN_PROGRESS: "Progressing", kstatus.FAILED: "Degraded"}


@pytest.mark.parametrize(("obj", "expected_kstatus", "expected_argo"),
                         [pytest.param(o, k, a, id=what) for what, o, k, a in SCENARIOS])
def test_kstatus_and_argo_cd_read_the_same_state(obj: dict[str, Any], expected_kstatus: str,
                                                 expected_argo: str) -> None:
    assert kstatus.compute(obj).status == expected_kstatus
    assert _health(obj)[0] == expected_argo
    # Argo CD agrees with kstatus, but for two things kstatus has no word for: a paused rollout
    # (Suspended) and an object never reconciled (kstatus calls it Current for want of status).
    if (obj.get("status") or {}).get("phase") != "Paused" and obj.get("status"):
        assert _ARGO[expected_kstatus] == expected_argo


def test_kstatus_rule_order() -> None:
    """The helper follows kstatus' order: deletion, generation, Reconciling/Stalled, Ready, Current."""
    stalled = _obj(("Ready", "False", "InvalidSpec"))
    deleting = {**stalled, "metadata": {**stalled["metadata"], "deletionTimestamp": "t"}}
    assert kstatus.compute(deleting).status == kstatus.TERMINATING
    assert kstatus.compute({**stalled, "metadata": {"generation": 3}}).status == kstatus.IN_PROGRESS
    assert kstatus.compute(stalled).status == kstatus.FAILED
    assert kstatus.compute({"metadata": {}, "status": {"conditions": [
        {"type": "Ready", "status": "Unknown"}]}}).status == kstatus.IN_PROGRESS
    assert kstatus.compute({"metadata": {}, "status": {}}).status == kstatus.CURRENT


def test_message_names_the_reason() -> None:
    assert _health(_obj(("Ready", "False", "InvalidData")))[1] == "InvalidData: m"
    assert "generation 2" in _health(_obj(("Ready", "True", "Serving"), observed=1))[1]
