"""watch_call at the edges the first tests left open: every thread named, a thread still
running at return reported by name, threads that ran before the call left alone, child
processes still running, processes started through the frozen `os` module or a raw
`fork_exec`, a toolchain's own threads allowed, an origin with no frame outside the
standard library, long arguments shortened, and the outputs kept for the side-stream
check.

Written against the mutants of `benchmarks/mutation.py` that the first tests let through;
each test states a rule of the guard's contract, not a line of its code.
"""

from __future__ import annotations

import _thread
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from solforge.bench.guards import watch_call

HERE = Path(__file__).name


def messages(report) -> list[str]:
    return [f.message for f in report.findings]


def test_the_outputs_kept_for_the_side_stream_check_are_the_plain_tensors():
    a, b = torch.ones(2), torch.zeros(3)
    with watch_call("cpu") as report:
        report.set_outputs((a, np.ones(2), None, torch.nn.Parameter(torch.ones(1)), b))
    assert len(report.outputs) == 2 and report.outputs[0] is a and report.outputs[1] is b
    with watch_call("cpu") as single:
        single.set_outputs(a)
    assert len(single.outputs) == 1 and single.outputs[0] is a


def test_every_thread_started_at_one_line_is_named():
    release = threading.Event()
    threads = []
    with watch_call("cpu") as report:
        for name in ("first-worker", "second-worker"):
            threads.append(threading.Thread(target=release.wait, args=(5,), name=name, daemon=True))
            threads[-1].start()  # one line, two threads
    release.set()
    for t in threads:
        t.join(5)
    started = [m for m in messages(report) if " started at " in m]
    assert [m.split(" started at ")[0] for m in started] == [
        "threads or processes: thread 'first-worker'", "threads or processes: thread 'second-worker'"]
    assert all(m.split(" started at ")[1].startswith(f"{HERE}:") for m in started)


def test_a_thread_still_running_at_return_is_reported_by_name_and_one_from_before_is_not():
    release = threading.Event()
    before = threading.Thread(target=release.wait, args=(5,), name="started-before", daemon=True)
    before.start()
    with watch_call("cpu") as report:
        during = threading.Thread(target=release.wait, args=(5,), name="left-running", daemon=True)
        during.start()
    release.set()
    before.join(5), during.join(5)
    got = messages(report)
    assert "threads or processes: thread 'left-running' started during the call is still running at return" in got
    assert not [m for m in got if "started-before" in m], got


def test_a_raw_thread_start_still_returns_the_threads_ident():
    done = threading.Event()
    seen: list[int] = []

    def body():
        seen.append(threading.get_ident())
        done.set()

    with watch_call("cpu"):
        ident = _thread.start_new_thread(body, ())
    done.wait(5)
    assert seen == [ident]


def test_a_child_process_still_running_at_return_is_reported():
    with watch_call("cpu") as report:
        child = subprocess.Popen(["sleep", "5"])
    try:
        got = messages(report)
    finally:
        child.kill()
        child.wait()
    assert f"threads or processes: child process {child.pid} started during the call" in got
    assert len([m for m in got if m.startswith("threads or processes: subprocess.Popen")]) == 1, got


def test_a_process_started_through_the_frozen_os_module_is_placed_at_the_callers_line():
    # os.spawnv is Python code of the frozen `os` module: standard library, so the origin
    # is the line that called it, never "<frozen os>".
    with watch_call("cpu") as report:
        line = sys._getframe().f_lineno + 1
        os.spawnv(os.P_WAIT, "/bin/true", ["true"])
    assert f"threads or processes: os.fork at {HERE}:{line}" in messages(report), messages(report)


def _raw_fork_exec() -> int:
    """/bin/true started by `_posixsubprocess.fork_exec` itself (no subprocess.Popen, so no
    audit event: only the wrapper sees it); its exit status."""
    import _posixsubprocess

    errpipe_read, errpipe_write = os.pipe()
    try:
        pid = _posixsubprocess.fork_exec(
            ["/bin/true"], (b"/bin/true",), True, (errpipe_write,), None, None, -1, -1, -1, -1, -1, -1,
            errpipe_read, errpipe_write, True, False, -1, None, None, None, -1, None, True)
    finally:
        os.close(errpipe_write)
    os.read(errpipe_read, 64)
    os.close(errpipe_read)
    return os.waitpid(pid, 0)[1]


_RAW_FORK_EXEC_LINE = _raw_fork_exec.__code__.co_firstlineno + 7  # the fork_exec call


@pytest.mark.skipif(sys.version_info[:2] not in ((3, 11), (3, 12)),
                    reason="_posixsubprocess.fork_exec's argument list is that of CPython 3.11 and 3.12")
def test_a_raw_fork_exec_is_named_with_its_program_at_the_line_that_called_it():
    with watch_call("cpu") as report:
        assert _raw_fork_exec() == 0
    assert messages(report) == [f"threads or processes: process ((b'/bin/true',)) started at "
                                f"{HERE}:{_RAW_FORK_EXEC_LINE}"]


def test_a_long_argument_is_shortened_to_sixty_characters():
    command = "true " + "x" * 80
    with watch_call("cpu") as report:
        os.system(command)
    shown = repr(command.encode())[:57] + "..."
    assert [m.split(" at ")[0] for m in messages(report)] == [f"threads or processes: os.system ({shown})"]
    with watch_call("cpu") as short:
        os.system("true")
    assert [m.split(" at ")[0] for m in messages(short)] == ["threads or processes: os.system (b'true')"]


def test_a_toolchains_own_thread_is_allowed_even_if_still_running():
    # Code whose file lies in a compiler toolchain's package (numba here) may start
    # threads: the guard judges by the frame's file, so a function compiled under such a
    # path stands in for the toolchain's own code.
    import numba

    toolchain_file = os.path.join(os.path.dirname(os.path.realpath(numba.__file__)), "_solforge_watch_test.py")
    namespace: dict = {"threading": threading}
    exec(compile("def start(release):\n"  # noqa: S102 - a test fixture's own code
                 "    t = threading.Thread(target=release.wait, args=(5,), name='compile-worker', daemon=True)\n"
                 "    t.start()\n"
                 "    return t\n", toolchain_file, "exec"), namespace)
    release = threading.Event()
    with watch_call("cpu") as report:
        worker = namespace["start"](release)
    release.set()
    worker.join(5)
    assert report.findings == []


def test_a_thread_whose_origin_has_no_frame_outside_the_standard_library_is_reported():
    # A Timer's thread runs only standard-library frames; the thread it starts has no
    # origin in anyone's code, and that is no licence.
    release = threading.Event()
    inner = threading.Thread(target=release.wait, args=(5,), name="started-by-stdlib", daemon=True)
    timer = threading.Timer(0.0, inner.start)
    with watch_call("cpu") as report:
        timer.start()
        timer.join(5)
    release.set()
    inner.join(5)
    got = messages(report)
    assert "threads or processes: thread 'started-by-stdlib' started at <standard library>" in got, got


def test_the_side_stream_comparison_is_bit_for_bit():
    # The side-stream check runs on CUDA only; the comparison it rests on is plain torch,
    # and is held to its rule here: the same bytes in the same shape and dtype, nothing else.
    from solforge.bench.guards.watch import _bitwise_equal

    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert _bitwise_equal(x, x.clone())
    assert _bitwise_equal(torch.full((3,), float("nan")), torch.full((3,), float("nan")))  # same bits
    assert not _bitwise_equal(torch.zeros(1), -torch.zeros(1))  # equal values, other bits
    assert not _bitwise_equal(torch.ones(1), torch.full((1,), 2.0))
    assert not _bitwise_equal(x, x + 1)
    assert not _bitwise_equal(x, x.reshape(3, 2))  # the same bytes in another shape
    assert not _bitwise_equal(x, x.view(torch.int32))  # ... or another dtype
    assert _bitwise_equal(torch.empty(0, 3), torch.empty(0, 3))
    assert _bitwise_equal(x.t(), x.t().contiguous())  # the layout in memory does not matter


def test_an_argument_of_sixty_characters_is_shown_whole_and_one_more_is_shortened():
    # repr(b"...") adds three characters to the command: 57 -> 60, 58 -> 61.
    for length, shown in ((57, None), (58, 57)):
        command = "true " + "y" * (length - 5)
        text = repr(command.encode())
        with watch_call("cpu") as report:
            os.system(command)
        expected = text if shown is None else text[:shown] + "..."
        assert [m.split(" at ")[0] for m in messages(report)] == [f"threads or processes: os.system ({expected})"]


def test_a_process_started_by_popen_is_reported_once():
    # The audit event (subprocess.Popen) and the fork_exec wrapper see the same start.
    with watch_call("cpu") as report:
        subprocess.run(["true"], check=True)
    started = [m for m in messages(report) if " at " in m]
    assert len(started) == 1 and started[0].startswith("threads or processes: subprocess.Popen"), started


class _FakeEvent:
    """torch.cuda.Event's surface the side-stream check uses; nothing to wait for."""

    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _FakeStream:
    def __init__(self, device: torch.device, busy: bool):
        self.device, self.busy = device, busy

    def query(self) -> bool:  # True when all its work is done
        return not self.busy


@pytest.mark.parametrize("device, index", [("cuda", 0), ("cuda:1", 1)])
def test_the_side_stream_check_reports_late_writes_and_busy_streams_of_its_own_device(monkeypatch, device, index):
    # No GPU here: the CUDA runtime is stood in for by fakes, so this holds the check's
    # decisions (which outputs changed, which streams count), not CUDA's stream semantics
    # (tests/bench/test_bench_gpu.py runs the real thing on a GPU).
    from solforge.bench.guards import watch as watch_module
    from solforge.bench.guards.watch import CallReport, _side_stream_findings

    late: list = []  # work of a side stream that finishes only at the device-wide synchronize
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "the current stream")
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: [write() for write in late])
    mine = torch.device("cuda", index)
    elsewhere = torch.device("cuda", 1 - index)
    streams = [_FakeStream(mine, busy=True), _FakeStream(mine, busy=False), _FakeStream(elsewhere, busy=True),
               _FakeStream(mine, busy=True)]
    monkeypatch.setattr(watch_module, "_STREAMS", weakref.WeakSet(streams))

    report = CallReport(device=device)
    written, untouched = torch.zeros(4), torch.ones(2)
    report.outputs = [untouched, written]
    late.append(lambda: written.add_(1))
    assert [f.message for f in _side_stream_findings(report)] == [
        "work left on a side stream: outputs [1] changed after the current stream finished",
        "work left on a side stream: 2 stream(s) created by the solution still busy when the current stream finished"]
    assert [f.guard for f in _side_stream_findings(CallReport(device=device))] == ["side-stream"]  # the busy streams

    late.clear()
    for s in streams:
        s.busy = False
    quiet = CallReport(device=device)
    quiet.outputs = [untouched, written]
    assert _side_stream_findings(quiet) == []


def test_a_start_function_kept_from_a_watch_still_starts_threads_after_it():
    # Code that took `_thread.start_new_thread` while watched holds the wrapper: after the
    # watch it must behave as the original (start the thread, return its ident).
    with watch_call("cpu"):
        kept = _thread.start_new_thread
    done = threading.Event()
    seen: list[int] = []

    def body():
        seen.append(threading.get_ident())
        done.set()

    ident = kept(body, ())
    assert done.wait(5)
    assert seen == [ident]
