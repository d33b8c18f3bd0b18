"""The shared clock that replaces per-object timers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from loopwright.operator.controllers._runtime import Clock

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_fires_once_per_due_time_then_again_after_a_while() -> None:
    clock = Clock(period=1, refire_after=60)
    index = {
        ("ns", "a"): [T0],
        ("ns", "b"): [T0 + timedelta(minutes=5)],
        ("ns", "c"): [None],
        ("ns", "d"): [],
    }
    assert clock.due(index, moment=T0, monotonic=0.0) == [("ns", "a")]
    assert clock.due(index, moment=T0 + timedelta(seconds=5), monotonic=5.0) == []
    assert clock.due(index, moment=T0 + timedelta(seconds=61), monotonic=61.0) == [("ns", "a")]
    index[("ns", "a")] = [T0 + timedelta(seconds=62)]
    assert clock.due(index, moment=T0 + timedelta(seconds=62), monotonic=62.0) == [("ns", "a")]


def test_later_retries_a_key_without_an_index_entry() -> None:
    clock = Clock(period=1)
    clock.later(("ns", "x"), delay=10)
    assert clock.due({}, moment=T0, monotonic=0.0) == []
    clock.later(("ns", "x"), delay=-1)
    assert clock.due({}, moment=T0, monotonic=time.monotonic()) == [("ns", "x")]
    assert clock.due({}, moment=T0, monotonic=time.monotonic()) == []


def test_forget_drops_what_the_clock_remembers() -> None:
    clock = Clock(period=1, refire_after=60)
    index = {("ns", "a"): [T0]}
    assert clock.due(index, moment=T0, monotonic=0.0) == [("ns", "a")]
    clock.later(("ns", "a"), delay=-1)
    clock.forget(("ns", "a"))
    assert clock.due(index, moment=T0, monotonic=1.0) == [("ns", "a")]


def test_a_passed_time_does_not_hide_a_later_one() -> None:
    clock = Clock(period=1, refire_after=600)
    cooldown_end, slot = T0, T0 + timedelta(minutes=1)
    index = {("ns", "p"): [(cooldown_end, slot)]}
    assert clock.due(index, moment=T0 + timedelta(seconds=1), monotonic=1.0) == [("ns", "p")]
    assert clock.due(index, moment=T0 + timedelta(seconds=30), monotonic=30.0) == []
    assert clock.due(index, moment=slot, monotonic=61.0) == [("ns", "p")]
