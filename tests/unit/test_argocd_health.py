"""The Argo CD health check of manifests/argocd/argocd-cm.yaml, run in Lua 5.1 (Argo CD's dialect).

Argo CD evaluates the script with gopher-lua (Lua 5.1) and a global ``obj``; LuaJIT through
lupa is the same language, so the verdicts here are the ones Argo CD shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from loopwright.api.kinds import ALL_KINDS

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


def _obj(*, generation: int = 2, observed: int | None = 2, ready: tuple[str, str] | None = ("True", "Ready"),
         phase: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [{"type": "Validated", "status": "True", "reason": "X"},
                                {"type": "Ready", "status": ready[0], "reason": ready[1], "message": "m"}]
    if phase:
        status["phase"] = phase
    return {"metadata": {"name": "x", "generation": generation}, "status": status}


def test_every_kind_has_the_same_script() -> None:
    scripts = _scripts()
    assert set(scripts) == set(KINDS)
    assert len(set(scripts.values())) == 1


def test_readme_shows_the_shipped_script() -> None:
    script = _scripts()["Dataset"].strip()
    readme = (REPO / "README.md").read_text()
    indented = "\n".join(("    " + line if line else line) for line in script.splitlines())
    assert script in readme or indented in readme


@pytest.mark.parametrize(("obj", "expected"), [
    ({"metadata": {"name": "x", "generation": 1}}, "Progressing"),
    (_obj(observed=1), "Progressing"),
    (_obj(observed=None), "Progressing"),
    (_obj(), "Healthy"),
    (_obj(ready=("False", "Profiling")), "Progressing"),
    (_obj(ready=("Unknown", "Pending")), "Progressing"),
    (_obj(ready=("False", "InvalidData")), "Degraded"),
    (_obj(ready=("False", "VerificationFailed")), "Degraded"),
    (_obj(ready=("False", "CredentialsForbidden")), "Degraded"),
    (_obj(ready=("False", "AccessDenied")), "Degraded"),
    (_obj(ready=("False", "SourceUnreachable")), "Progressing"),
    (_obj(ready=("True", "Checked"), phase="Rejected"), "Degraded"),
    (_obj(ready=("True", "Serving"), phase="RolledBack"), "Degraded"),
    (_obj(ready=("True", "Serving"), phase="Paused"), "Suspended"),
    (_obj(ready=("True", "Serving"), phase="Stable"), "Healthy"),
])
def test_verdicts(obj: dict[str, Any], expected: str) -> None:
    assert _health(obj)[0] == expected


def test_message_names_the_reason() -> None:
    assert _health(_obj(ready=("False", "InvalidData")))[1] == "InvalidData: m"
    assert "generation 2" in _health(_obj(observed=1))[1]
