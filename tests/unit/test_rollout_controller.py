"""The Deployment controller's pure-ish helpers: the status diff."""

from __future__ import annotations

from loopwright.operator.controllers import deployment


def test_status_diff_ignores_nulls_at_any_depth() -> None:
    stored = {"phase": "Stable", "canary": {"version": 2, "step": 0}, "history": [{"a": 1}]}
    assert not deployment._differs(
        stored, {**stored, "canary": {"version": 2, "step": 0, "reachedTime": None}, "url": None}
    )
    assert deployment._differs(stored, {**stored, "canary": {"version": 2, "step": 1}})
    assert deployment._differs(stored, {**stored, "canary": None})
