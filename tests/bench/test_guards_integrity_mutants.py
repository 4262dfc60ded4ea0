"""The integrity snapshot at the edges the first tests left open: keyword defaults and
defaults that appear where there were none, closures with an empty cell, a sys.modules
replaced by a dict that lacks a protected module, the same hook installed again, and
what a finding says the name is now bound to.

Written against the mutants of `benchmarks/mutation.py` that the first tests let through;
each test states a rule of the snapshot's contract, not a line of its code.
"""

from __future__ import annotations

import sys
import time

import pytest

from solforge.bench.guards import IntegritySnapshot


def messages(snapshot: IntegritySnapshot) -> list[str]:
    return [f.message for f in snapshot.verify()]


def test_swapped_keyword_defaults_are_caught():
    def compare(a, b, *, rtol=1e-4):
        return abs(a - b) <= rtol

    snapshot = IntegritySnapshot.take({"harness.compare": compare})
    assert snapshot.verify() == []
    compare.__kwdefaults__ = {"rtol": 1e9}
    assert messages(snapshot) == ["harness tamper: the __kwdefaults__ of harness.compare was swapped"]


def test_defaults_given_to_a_function_that_had_none_are_caught():
    def compare(a, b, rtol):
        return abs(a - b) <= rtol

    snapshot = IntegritySnapshot.take({"harness.compare": compare})
    compare.__defaults__ = (1e9,)
    assert messages(snapshot) == ["harness tamper: the __defaults__ of harness.compare was swapped"]


def _with_an_empty_cell():
    def tolerance():
        return later  # a free variable whose cell is never filled

    return tolerance
    later = 1.0  # noqa: F841 — unreachable on purpose: the cell stays empty


def test_an_empty_closure_cell_is_left_alone_until_it_is_filled():
    fn = _with_an_empty_cell()
    snapshot = IntegritySnapshot.take({"harness.tolerance": fn})
    assert snapshot.verify() == [] and snapshot.verify() == []
    fn.__closure__[0].cell_contents = 1e9
    assert messages(snapshot) == ["harness tamper: the closure of harness.tolerance was swapped"]


def test_a_sys_modules_replaced_by_a_dict_without_time_shows_the_timers_missing():
    snapshot = IntegritySnapshot.take()
    saved = sys.modules
    sys.modules = {k: v for k, v in saved.items() if k != "time"}
    try:
        got = messages(snapshot)
    finally:
        sys.modules = saved
    assert got[0] == "harness tamper: sys.modules was replaced"
    assert "timer patch: time.perf_counter was replaced (now missing)" in got
    assert snapshot.verify() == []


def _fake_clock() -> float:
    return 0.0


def test_a_finding_names_what_the_timer_is_bound_to_now():
    snapshot = IntegritySnapshot.take()
    original = time.perf_counter
    time.perf_counter = _fake_clock
    try:
        got = messages(snapshot)
    finally:
        time.perf_counter = original
    assert got == [f"timer patch: time.perf_counter was replaced (now {__name__}._fake_clock)"]


class _Profiler:
    def hook(self, frame, event, arg):
        return None


def test_the_same_profiler_installed_again_is_no_change():
    # A bound method is a new object on each access, equal to the last: not a new hook.
    profiler = _Profiler()
    previous = sys.getprofile()
    sys.setprofile(profiler.hook)
    try:
        snapshot = IntegritySnapshot.take()
        sys.setprofile(profiler.hook)
        unchanged = snapshot.verify()
        sys.setprofile(_Profiler().hook)
        changed = messages(snapshot)
    finally:
        sys.setprofile(previous)
    assert unchanged == []
    assert [m.split(" (")[0] for m in changed] == ["harness tamper: sys.getprofile() changed"]


def test_a_snapshots_records_cannot_be_rewritten_in_place():
    # The snapshot lives in the solution's process: its records are read-only values, so
    # rebinding what a protected name was bound to takes more than an assignment.
    import dataclasses

    snapshot = IntegritySnapshot.take()
    record = snapshot.entries[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.obj = _fake_clock
    assert snapshot.verify() == []
