"""The DriftPolicy controller's small decisions that need no cluster: whose retrain request wins, ports."""

from types import SimpleNamespace
from typing import Any

import pytest

from loopwright.core.conditions import Verdict
from loopwright.operator.controllers import _runtime, driftpolicy


def test_only_an_earlier_request_of_the_same_policy_is_replaced():
    older = driftpolicy._older_request
    assert older("watch-100", policy="watch", than="watch-200")
    assert not older("watch-300", policy="watch", than="watch-200")  # ours is the older one
    assert not older("watch-200", policy="watch", than="watch-200")
    assert not older("manual-1", policy="watch", than="watch-200")  # a person's request stays
    assert not older("watch-x-100", policy="watch", than="watch-200")
    # Another policy whose name starts with ours is not ours.
    assert not older("watch-2-100", policy="watch", than="watch-200")


def _pod(*ports: tuple[str | None, int]) -> SimpleNamespace:
    container = SimpleNamespace(ports=[SimpleNamespace(name=n, container_port=p) for n, p in ports])
    return SimpleNamespace(spec=SimpleNamespace(containers=[container]))


def test_predictor_port_from_the_pod_spec():
    assert driftpolicy._port(_pod(("metrics", 9000), ("http", 8081))) == 8081
    assert driftpolicy._port(_pod((None, 7000))) == 7000
    assert driftpolicy._port(_pod()) == driftpolicy.DEFAULT_PORT


class _Policies:
    """The two status calls the check makes, against versions of one DriftPolicy kept in memory."""

    ConflictError = _runtime.ConflictError

    def __init__(self, *versions: dict[str, Any] | None) -> None:
        self.versions = list(versions)  # what each re-read returns, in order
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.conflicts = len(versions)  # each write before the last re-read meets a newer version

    def patch_status(self, kind: Any, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            raise _runtime.ConflictError("changed")
        self.writes.append((obj["metadata"]["resourceVersion"], status))
        return obj

    def get(self, kind: Any, *, namespace: str, name: str) -> dict[str, Any] | None:
        return self.versions.pop(0)


def _policy(
    version: str, *, generation: int = 1, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": "watch", "resourceVersion": version, "generation": generation}
    return {"metadata": meta, "status": {"conditions": conditions or []}}


CHECKED = [Verdict(type="Ready", status=True, reason="Checked"), Verdict(type="DriftDetected", status=False,
                                                                           reason="NoDrift")]


def test_a_check_publishes_onto_the_version_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _Policies()
    monkeypatch.setattr(driftpolicy, "_runtime", api)
    assert driftpolicy._write_status(_policy("1"), fields={"samples": 3}, verdicts=CHECKED)
    ((version, status),) = api.writes
    assert version == "1"
    assert status["samples"] == 3
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "Checked"), ("DriftDetected", "NoDrift"), ("Stalled", "NotStalled"),
        ("Reconciling", "Converged")]


def test_a_write_in_between_is_merged_into_not_erased(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reconcile published Pending (and another controller a condition of its own) after the
    # check read the policy: a merge patch from the stale read would replace that whole list.
    fresh = _policy("2", conditions=[{"type": "Ready", "status": "False", "reason": "Pending"},
                                     {"type": "Custom", "status": "True", "reason": "Kept"}])
    api = _Policies(fresh)
    monkeypatch.setattr(driftpolicy, "_runtime", api)
    assert driftpolicy._write_status(_policy("1"), fields={}, verdicts=CHECKED)
    ((version, status),) = api.writes
    assert version == "2"
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "Checked"), ("Custom", "Kept"), ("DriftDetected", "NoDrift"), ("Stalled", "NotStalled"),
        ("Reconciling", "Converged")]


def test_a_check_of_an_old_generation_or_a_deleted_policy_publishes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for after in (_policy("2", generation=2), None):
        api = _Policies(after)
        monkeypatch.setattr(driftpolicy, "_runtime", api)
        assert not driftpolicy._write_status(_policy("1"), fields={}, verdicts=CHECKED)
        assert api.writes == []
