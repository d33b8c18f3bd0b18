"""KEP-1623 condition helpers and the Ready condition every controller publishes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from cel_cases import CASES
from loopwright.api.kinds import ALL_KINDS, DEPLOYMENT, Kind
from loopwright.core import conditions
from loopwright.core.conditions import READY, Verdict
from loopwright.operator.controllers._common import INVALID_SPEC, NOT_IMPLEMENTED, stub_status

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_is_stamped() -> None:
    result = conditions.set_condition(None, type_=READY, status=False, reason="Waiting", generation=3, now=T0)
    assert result[0] == {
        "type": "Ready",
        "status": "False",
        "reason": "Waiting",
        "message": "",
        "observedGeneration": 3,
        "lastTransitionTime": "2026-01-01T12:00:00Z",
    }
    # kstatus' pair follows Ready: not stalled, reconciling (Ready is not True for a curable reason)
    assert [(c["type"], c["status"], c["reason"]) for c in result[1:]] == [
        ("Stalled", "False", "NotStalled"), ("Reconciling", "True", "Waiting")]


def test_same_status_keeps_transition_time_but_updates_the_rest() -> None:
    first = conditions.set_condition(None, type_=READY, status=False, reason="Waiting", generation=1, now=T0)
    second = conditions.set_condition(
        first, type_=READY, status=False, reason="StillWaiting", message="job pending", generation=2, now=T1
    )
    assert second[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert second[0]["reason"] == "StillWaiting"
    assert second[0]["message"] == "job pending"
    assert second[0]["observedGeneration"] == 2


def test_status_change_moves_transition_time() -> None:
    first = conditions.set_condition(None, type_=READY, status=False, reason="Waiting", generation=1, now=T0)
    second = conditions.set_condition(first, type_=READY, status=True, reason="Serving", generation=1, now=T1)
    assert second[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert conditions.is_true(second, READY)
    assert not conditions.is_true(first, READY)


def test_merge_keeps_other_types_and_order() -> None:
    start = conditions.merge(
        None,
        [
            Verdict(type="Validated", status=True, reason="Passed"),
            Verdict(type=READY, status=False, reason="Waiting"),
        ],
        generation=1,
        now=T0,
    )
    result = conditions.merge(
        start, [Verdict(type=READY, status=True, reason="Serving")], generation=1, now=T1
    )
    assert [c["type"] for c in result] == ["Validated", READY, "Stalled", "Reconciling"]
    assert result[0] == start[0]
    assert start[1]["status"] == "False"  # the input is not mutated


def test_unknown_status_and_bad_reason() -> None:
    result = conditions.set_condition(
        None,
        type_="Validated",
        status=conditions.ConditionStatus.UNKNOWN,
        reason="Checking",
        generation=None,
        now=T0,
    )
    assert result[0]["status"] == "Unknown"
    assert "observedGeneration" not in result[0]
    with pytest.raises(ValidationError):
        conditions.set_condition(None, type_=READY, status=True, reason="not a reason!", generation=1, now=T0)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_stub_controllers_never_claim_success(kind: Kind) -> None:
    reference = next(c.object for c in CASES if c.kind == kind.kind and c.should_be_accepted)
    status = stub_status(kind, spec=reference["spec"], status=None, generation=4, now=T0)
    assert status["observedGeneration"] == 4
    ready = conditions.find(status["conditions"], READY)
    assert ready is not None
    assert ready["status"] == "False"
    assert ready["reason"] == NOT_IMPLEMENTED
    assert "not act on" in ready["message"]


def test_stub_controller_reports_invalid_spec() -> None:
    status = stub_status(
        DEPLOYMENT, spec={"model": "churn", "version": "newest"}, status=None, generation=2, now=T0
    )
    ready = conditions.find(status["conditions"], READY)
    assert ready is not None
    assert ready["reason"] == INVALID_SPEC
    assert "spec.version" in ready["message"]
