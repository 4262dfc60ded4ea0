"""watch_call catches threads and processes started by user code, and on CUDA work left
on side streams; numba prange, torch's intra-op threads and compiler subprocesses pass."""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time

import pytest
import torch
from exploits import RMSNORM, entry, import_solution, make_inputs, reference, solution

from solforge.bench.guards import static_findings, watch_call

HERE = "test_guards_watch.py"


def watched(name: str, tmp_path, device: str = "cpu", **input_kwargs):
    """Import kernel `name`, call it once under watch_call; (findings, output)."""
    sol = solution(name)
    fn = entry(import_solution(sol, tmp_path), sol)
    inputs = make_inputs(0, **input_kwargs)
    if device != "cpu":
        inputs = {k: v.to(device) for k, v in inputs.items()}
    with watch_call(device) as report:
        out = fn(**inputs)
        report.set_outputs(out)
    return report.findings, out, inputs


def wait_for_threads(started_before: set[int]) -> None:
    # Exploit threads are daemons that finish in milliseconds; don't let them leak into the next test.
    for t in threading.enumerate():
        if t.ident not in started_before and t is not threading.current_thread():
            t.join(timeout=5)


@pytest.mark.parametrize("name", ["thread_output", "thread_hidden"])
def test_a_thread_computing_the_output_is_caught(name, tmp_path):
    # Inputs large enough (milliseconds of work) that the thread is still computing when
    # the call returns: a thread that finished before the return did its work on the clock.
    before = {t.ident for t in threading.enumerate()}
    findings, _, _ = watched(name, tmp_path, tokens=4096, hidden=256)
    wait_for_threads(before)
    assert findings and {f.guard for f in findings} == {"thread-or-process"}
    assert any("thread" in f.message and "started at main.py:" in f.message for f in findings), findings


def test_the_hidden_thread_is_invisible_to_the_static_guard(tmp_path):
    # Why the runtime guard exists: no import statement or constant names the module.
    assert static_findings(solution("thread_hidden"), RMSNORM) == []


@pytest.mark.parametrize("name, what", [
    ("process_fork", "os.fork at main.py:"),
    ("process_multiprocessing", "os.fork at main.py:"),
    ("process_subprocess", "subprocess.Popen"),
])
def test_a_process_computing_the_output_is_caught(name, what, tmp_path):
    findings, out, inputs = watched(name, tmp_path)
    torch.testing.assert_close(out, reference(**inputs))  # the exploit's answer is right: only the guard stops it
    assert findings and {f.guard for f in findings} == {"thread-or-process"}
    assert any(what in f.message for f in findings), findings


def test_a_raw_thread_start_is_caught_and_the_wrappers_come_off(tmp_path):
    original = _thread.start_new_thread
    release = threading.Event()
    with watch_call("cpu") as report:
        assert _thread.start_new_thread is not original  # wrapped while watching
        _thread.start_new_thread(release.wait, (5,))  # a builtin: the thread has no Python frame of its own
    release.set()
    assert _thread.start_new_thread is original
    assert [f.guard for f in report.findings] == ["thread-or-process"]
    assert "test_guards_watch.py:" in report.findings[0].message


def test_findings_are_kept_when_the_call_raises():
    release = threading.Event()
    with pytest.raises(RuntimeError, match="kernel failed"):
        with watch_call("cpu") as report:
            worker = threading.Thread(target=release.wait, args=(5,), name="left-behind", daemon=True)
            worker.start()
            raise RuntimeError("kernel failed")
    release.set()
    worker.join(5)
    assert {f.guard for f in report.findings} == {"thread-or-process"}
    assert "threads or processes: thread 'left-behind' started at test_guards_watch.py:" in report.findings[0].message


def test_a_thread_pool_joined_inside_the_call_is_honest():
    # Every worker finished before the call returned: all of their work was on the clock.
    from concurrent.futures import ThreadPoolExecutor

    x = torch.randn(64, 64)
    with watch_call("cpu") as report:
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = list(pool.map(torch.square, x.chunk(2)))
        report.set_outputs(torch.cat(parts))
    torch.testing.assert_close(torch.cat(parts), x.square())
    assert report.findings == []


def test_a_thread_that_finished_before_return_is_not_blamed_but_one_working_at_return_is():
    finished, release = threading.Event(), threading.Event()
    with watch_call("cpu") as report:
        short = threading.Thread(target=finished.set, name="short-lived")
        short.start()
        short.join(5)
        threading.Thread(target=release.wait, args=(5,), name="works-on", daemon=True).start()
        report.set_outputs(None)
    release.set()
    got = [f.message for f in report.findings]
    assert finished.is_set() and not [m for m in got if "short-lived" in m], got
    assert any(m.startswith("threads or processes: thread 'works-on' started at test_guards_watch.py:") for m in got)


def test_a_thread_that_ends_after_the_return_but_before_the_exit_is_caught():
    # Judged at the return (set_outputs), not at the block's exit: the worker is still
    # busy when the call hands its outputs over, though gone by the time the watch ends.
    release, gone = threading.Event(), threading.Event()
    y = torch.zeros(4)

    def fill():
        release.wait(5)
        y.fill_(1.0)
        gone.set()

    with watch_call("cpu") as report:
        worker = threading.Thread(target=fill, name="fills-after-return", daemon=True)
        worker.start()
        report.set_outputs(y)
        release.set()
        worker.join(5)
    assert gone.is_set() and y.eq(1.0).all()
    assert [f.message.split(" at ")[0] for f in report.findings] == [
        "threads or processes: thread 'fills-after-return' started"]


def test_a_thread_working_in_its_teardown_is_caught():
    # The thread's function returns at once; the work runs in a thread-local's __del__,
    # when the thread is torn down. It still runs Python at return: blamed.
    local = threading.local()
    in_teardown, release = threading.Event(), threading.Event()

    class Late:
        def __del__(self):
            in_teardown.set()
            release.wait(5)

    def work():
        local.late = Late()

    with watch_call("cpu") as report:
        threading.Thread(target=work, name="teardown-worker", daemon=True).start()
        assert in_teardown.wait(5)  # work() has returned: the start wrapper marked it done
        report.set_outputs(None)
    release.set()
    assert any(f.message.startswith("threads or processes: thread 'teardown-worker' started at ")
               for f in report.findings), report.findings


def test_a_thread_left_by_an_earlier_call_is_not_blamed_on_the_next():
    release = threading.Event()
    with watch_call("cpu") as first:
        threading.Thread(target=release.wait, args=(5,), daemon=True).start()
    with watch_call("cpu") as second:
        time.sleep(0.01)
    release.set()
    assert first.findings and second.findings == []



def _compiled_at(path, source: str, **namespace) -> dict:
    """`source` executed as if it were the file `path` (its frames carry that file name)."""
    namespace = {"threading": threading, **namespace}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - a test fixture's own code
    return namespace


def _library_and_toolchain(tmp_path) -> tuple[dict, dict]:
    """A stand-in for an installed library (a file under site-packages) whose `service`
    starts a thread running `target`, and a compiler toolchain (a file under numba's
    package, like test_guards_watch_mutants) whose `compile_with` calls a function and
    `compile_showing_progress` the library's service."""
    import numba

    library = _compiled_at(tmp_path / "site-packages" / "progress_lib.py",
                           "def service(target, name):\n"
                           "    t = threading.Thread(target=target, name=name, daemon=True)\n"
                           "    t.start()\n"
                           "    return t\n")
    toolchain = _compiled_at(os.path.join(os.path.dirname(os.path.realpath(numba.__file__)), "_solforge_origin.py"),
                             "def compile_with(callback):\n"
                             "    return callback()\n"
                             "def compile_showing_progress(service, wait):\n"
                             "    return service(wait, 'monitor')\n")
    return library, toolchain


def test_a_librarys_service_thread_started_under_a_toolchain_is_the_toolchains(tmp_path):
    # An inductor compile shows a tqdm bar whose monitor thread outlives the call: tqdm's
    # frame is the innermost, the compiler's the first that decides.
    library, toolchain = _library_and_toolchain(tmp_path)
    release = threading.Event()
    with watch_call("cpu") as report:
        worker = toolchain["compile_showing_progress"](library["service"], release.wait)
        report.set_outputs(None)
    release.set()
    worker.join(5)
    assert report.findings == []


def test_a_thread_started_through_a_library_or_a_toolchains_callback_is_still_the_solutions(tmp_path):
    library, toolchain = _library_and_toolchain(tmp_path)
    release = threading.Event()
    workers = []
    with watch_call("cpu") as report:
        line = sys._getframe().f_lineno + 1
        workers.append(library["service"](lambda: release.wait(5), "through-a-library"))

        def callback():  # the solution's code, called by the toolchain: the solution answers for it
            workers.append(threading.Thread(target=release.wait, args=(5,), name="from-a-callback", daemon=True))
            workers[-1].start()

        toolchain["compile_with"](callback)
        report.set_outputs(None)
    release.set()
    for t in workers:
        t.join(5)
    got = [f.message for f in report.findings]
    assert f"threads or processes: thread 'through-a-library' started at {HERE}:{line}" in got, got
    assert f"threads or processes: thread 'from-a-callback' started at {HERE}:{line + 4}" in got, got

def test_numba_prange_is_honest(tmp_path):
    findings, out, inputs = watched("honest_numba_prange", tmp_path, tokens=64)
    torch.testing.assert_close(out, reference(**inputs))
    assert findings == []


def test_torch_intra_op_threads_are_honest(tmp_path):
    # Large enough that torch splits the reduction over its native intra-op pool.
    findings, out, inputs = watched("honest_set_num_threads", tmp_path, tokens=4096, hidden=256)
    torch.testing.assert_close(out, reference(**inputs))
    assert findings == []


def test_honest_torch_passes(tmp_path):
    findings, _, _ = watched("honest_torch", tmp_path)
    assert findings == []


_POPENS: list[object] | None = None  # set to a list to record subprocess.Popen audit events


def _record_popen(event: str, args: tuple) -> None:
    if _POPENS is not None and event == "subprocess.Popen":
        _POPENS.append(args[1])


sys.addaudithook(_record_popen)


def test_a_compiler_toolchains_own_subprocess_is_honest():
    import torch.utils.cpp_extension as cpp_extension

    global _POPENS
    _POPENS = []
    try:
        with watch_call("cpu") as report:
            cpp_extension.is_ninja_available()  # runs `ninja --version` from torch.utils.cpp_extension
        started = _POPENS
    finally:
        _POPENS = None
    assert started, "the toolchain started no process: the test proves nothing"
    assert report.findings == []


# -- CUDA: side streams ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["side_stream", "side_stream_import"])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_work_left_on_a_side_stream_is_caught(name, tmp_path):
    findings, out, inputs = watched(name, tmp_path, device="cuda")
    assert findings and {f.guard for f in findings} == {"side-stream"}
    assert any("work left on a side stream" in f.message for f in findings)
    torch.testing.assert_close(out, reference(**inputs))  # correct once the device is synchronized


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_a_joined_side_stream_is_honest(tmp_path):
    findings, out, inputs = watched("honest_side_stream", tmp_path, device="cuda")
    assert findings == []
    torch.testing.assert_close(out, reference(**inputs))
