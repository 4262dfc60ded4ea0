"""The integrity snapshot, taken before user code is imported, catches every rebinding or
in-place swap of a timer, a comparison function or a harness function, and nothing else."""

from __future__ import annotations

import sys
import time
import types

import pytest
import torch
import torch.testing
from exploits import import_solution, make_inputs, restored_globals, solution

from solforge.bench.guards import IntegritySnapshot

HARNESS_NAME = "solforge.bench._guard_test_harness"
HARNESS_SOURCE = '''
import torch

def helper(a, b):
    return torch.allclose(a, b)

def compare_outputs(out, ref):
    """Stands in for the harness's comparison function."""
    return helper(out, ref)
'''


@pytest.fixture
def harness():
    """A stand-in for a harness module under solforge.bench, removed afterwards."""
    module = types.ModuleType(HARNESS_NAME)
    exec(compile(HARNESS_SOURCE, "<guard-test-harness>", "exec"), vars(module))
    sys.modules[HARNESS_NAME] = module
    with restored_globals(module):
        yield module
    del sys.modules[HARNESS_NAME]


def messages(snapshot: IntegritySnapshot) -> list[tuple[str, str]]:
    return [(f.guard, f.message) for f in snapshot.verify()]


def run_exploit(name: str, tmp_path) -> None:
    namespaces = import_solution(solution(name), tmp_path)
    inputs = make_inputs(0)
    namespaces[0]["run"](**inputs)


def test_honest_kernel_leaves_the_snapshot_intact(harness, tmp_path):
    snapshot = IntegritySnapshot.take({f"{HARNESS_NAME}.compare_outputs": None})
    run_exploit("honest_torch", tmp_path)
    time.perf_counter(), torch.cuda.is_available()
    assert snapshot.verify() == []


def test_patched_perf_counter_is_caught(harness, tmp_path):
    snapshot = IntegritySnapshot.take()
    run_exploit("patch_perf_counter", tmp_path)
    got = messages(snapshot)
    assert len(got) == 1
    assert got[0][0] == "timer-patch" and got[0][1].startswith("timer patch: time.perf_counter was replaced")


def test_patched_cuda_synchronize_and_event_timing_are_caught(harness, tmp_path):
    snapshot = IntegritySnapshot.take()
    run_exploit("patch_cuda_timing", tmp_path)
    got = {m.split(" (now")[0] for g, m in messages(snapshot) if g == "timer-patch"}
    assert got == {"timer patch: torch.cuda.synchronize was replaced",
                   "timer patch: torch.cuda.Event.elapsed_time was replaced"}


def test_patched_harness_comparison_is_caught(harness, tmp_path):
    snapshot = IntegritySnapshot.take({f"{HARNESS_NAME}.compare_outputs": harness.compare_outputs})
    run_exploit("patch_compare", tmp_path)
    got = {m.split(" (now")[0] for g, m in messages(snapshot) if g == "harness-tamper"}
    assert f"harness tamper: {HARNESS_NAME}.compare_outputs was replaced" in got
    assert "harness tamper: torch.allclose was replaced" in got


def test_swapped_code_objects_are_caught(harness, tmp_path):
    compare = harness.compare_outputs
    snapshot = IntegritySnapshot.take({f"{HARNESS_NAME}.compare_outputs": compare})
    run_exploit("swap_code", tmp_path)
    assert harness.compare_outputs is compare  # the object is the same: only its code changed
    got = set(messages(snapshot))
    assert ("harness-tamper", "harness tamper: the __code__ of torch.testing.assert_close was swapped") in got
    assert ("harness-tamper", f"harness tamper: the __code__ of {HARNESS_NAME}.compare_outputs was swapped") in got


def test_a_protected_local_function_is_checked_by_its_insides(harness):
    def compare(a, b):
        return torch.allclose(a, b)

    snapshot = IntegritySnapshot.take({"harness.local_compare": compare})
    assert snapshot.verify() == []
    compare.__code__ = (lambda a, b: True).__code__
    assert messages(snapshot) == [
        ("harness-tamper", "harness tamper: the __code__ of harness.local_compare was swapped")]


def test_rewired_globals_closures_and_defaults_are_caught(harness):
    def make():
        tolerance = 1e-4

        def close(a, b, rtol=1e-4):
            return torch.allclose(a, b, rtol=rtol, atol=tolerance)

        return close

    close = make()
    snapshot = IntegritySnapshot.take({f"{HARNESS_NAME}.compare_outputs": None, "harness.close": close})
    harness.compare_outputs.__globals__["helper"] = lambda a, b: True
    close.__closure__[0].cell_contents = 1e9
    close.__defaults__ = (1e9,)
    got = {m for _, m in messages(snapshot)}
    assert got == {
        f"harness tamper: global 'helper' used by {HARNESS_NAME}.compare_outputs was rebound",
        "harness tamper: the closure of harness.close was swapped",
        "harness tamper: the __defaults__ of harness.close was swapped",
    }


def test_sys_modules_surgery_is_caught(harness):
    snapshot = IntegritySnapshot.take()
    fake = types.ModuleType("time")
    fake.perf_counter = lambda: 0.0
    sys.modules["time"] = fake
    got = messages(snapshot)
    assert got and all(g == "timer-patch" for g, _ in got)
    assert "timer patch: sys.modules['time'] was replaced (seen via time.perf_counter)" in [m for _, m in got]


def test_a_guard_function_rebound_by_user_code_is_caught(harness):
    import solforge.bench.guards as guards

    snapshot = IntegritySnapshot.take()
    original = guards.output_findings
    try:
        guards.output_findings = lambda outputs, device: []
        got = [m for _, m in messages(snapshot)]
        assert any(m.startswith("harness tamper: solforge.bench.guards.output_findings was replaced") for m in got)
    finally:
        guards.output_findings = original


def test_a_protected_name_that_does_not_resolve_is_an_error():
    with pytest.raises(ImportError, match="solforge.bench.no_such_module.fn"):
        IntegritySnapshot.take(["solforge.bench.no_such_module.fn"])



def test_a_tracer_or_a_torch_mode_left_active_is_caught(harness):
    from torch.overrides import TorchFunctionMode

    snapshot = IntegritySnapshot.take()
    mode = TorchFunctionMode()
    mode.__enter__()  # entered and never left: every later torch call passes through it
    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: None)
    try:
        got = [m for _, m in messages(snapshot)]
    finally:
        sys.settrace(previous)
        mode.__exit__(None, None, None)
    assert "harness tamper: the torch function mode stack changed (0 -> 1)" in got
    assert any(m.startswith("harness tamper: sys.gettrace() changed") for m in got)
    assert snapshot.verify() == []


def test_a_signal_handler_or_interval_timer_left_installed_is_tamper():
    """A handler runs the solution's code at any moment, the harness's waits included.
    (SIGUSR1 and the virtual timer: pytest-timeout may hold SIGALRM and the real one.)"""
    import signal

    snap = IntegritySnapshot.take()
    before = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_VIRTUAL, 1000.0)
        found = [f.message for f in snap.verify()]
        assert any("the handler of SIGUSR1 changed" in m for m in found), found
        assert any("the interval timer ITIMER_VIRTUAL is armed changed" in m for m in found), found
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0.0)
        signal.signal(signal.SIGUSR1, before)
    assert snap.verify() == []
