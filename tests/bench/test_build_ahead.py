"""Solutions built ahead (`BenchConfig.build_ahead`, issue 15 §2): a solution's process
builds, numba's first-call compile included (`Judge.prime`), outside the device lock while
another evaluation is judged, and is stopped in every timed section (`judge.quiet`).

The exploit class: a candidate that works while another candidate is timed (a busy
thread, a forked process that left the process group, a detached one) to slow it down.
The honest side: the verdicts are the same built ahead or not."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time
from pathlib import Path

import pytest
from exploits import RMSNORM

from solforge.bench import BenchConfig, TimingBudget, evaluate
from solforge.bench import judge as judge_module
from solforge.bench.compile_cache import sources_key
from solforge.bench.judge import DeviceLock, Judge, device_lock, not_dumpable, quiet
from solforge.spec import EvaluationStatus, Solution, Workload

WORKLOAD = Workload.model_validate({"uuid": "ahead", "axes": {"tokens": 8},
                                    "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}}})
TIMING = TimingBudget(warmup_s=0.01, max_time_s=0.2, max_iters=8, min_iters=5)

NUMBA_ROWS = """
import numba
import numpy as np
import torch


@numba.njit(cache=False)
def _rows(x, w, y):
    for i in range(x.shape[0]):
        s = 0.0
        for j in range(x.shape[1]):
            s += x[i, j] * x[i, j]
        r = 1.0 / np.sqrt(s / x.shape[1] + 1e-6)
        for j in range(x.shape[1]):
            y[i, j] = x[i, j] * r * w[j]


def run(x, weight):
    y = torch.empty_like(x)
    _rows(x.numpy(), weight.numpy(), y.numpy())
    return y
"""

TORCH_ROWS = """
import torch


def run(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
"""

# Works at import while it builds: a busy thread, a forked process that leaves the process
# group, and its own busy loop for BUSY_S, so that the test can time others meanwhile.
BUSY_BUILD = """
import os
import threading
import time

BUSY_S = 8.0


def _spin():
    while True:
        pass


threading.Thread(target=_spin, daemon=True).start()
if os.fork() == 0:
    os.setpgid(0, 0)
    _spin()
_end = time.monotonic() + BUSY_S
while time.monotonic() < _end:
    pass


def run(x, weight):
    import torch

    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
"""


def _solution(name: str, source: str, language: str = "pytorch") -> Solution:
    return Solution.model_validate({
        "name": name, "definition": RMSNORM.name, "author": "ahead-tests",
        "spec": {"language": language, "entry_point": "main.py::run", "destination_passing_style": False,
                 "target_hardware": ["cpu"]},
        "sources": [{"path": "main.py", "content": source}]})


def _cpu_s(pid: int) -> float:
    """CPU time of process `pid`, all its threads, seconds."""
    return time.clock_gettime(((~pid) << 3) | 2)


def test_the_prime_call_compiles_numba_while_the_solution_is_built(tmp_path):
    """Primed, a numba solution has compiled (its cache files are written) before any
    judged call; only built, it has not."""
    solution = _solution("numba_rows", NUMBA_ROWS.replace("cache=False", "cache=True"), "numba")
    own = tmp_path / "cache" / sources_key(solution) / "numba"
    for prime in (None, WORKLOAD):
        workdir = tmp_path / f"w-{prime is not None}" / "solution"
        workdir.mkdir(parents=True)
        config = BenchConfig(compile_cache_dir=str(tmp_path / "cache"), build_ahead=True)
        judge = Judge(RMSNORM, solution, "cpu", config, False, workdir, 0)
        try:
            judge.spawn([WORKLOAD])
            loaded = judge.load()
            if prime is not None:
                judge.prime(prime)
        finally:
            judge.close()
        assert loaded.runnable, loaded.log
        compiled = sorted(p.name for p in own.glob("*.nbc")) if own.exists() else []
        assert bool(compiled) is (prime is not None), (prime, compiled)


@pytest.mark.parametrize("name,source,language,status", [
    ("honest_numba", NUMBA_ROWS, "numba", EvaluationStatus.PASSED),
    ("honest_torch", TORCH_ROWS, "pytorch", EvaluationStatus.PASSED),
    ("syntax_error", "def run(x, weight)\n    return x\n", "pytorch", EvaluationStatus.COMPILE_ERROR),
    ("dies_at_import", "import os\nos._exit(3)\n" + TORCH_ROWS, "pytorch", EvaluationStatus.RUNTIME_ERROR),
    ("thread_at_import", "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True)"
     ".start()\n" + TORCH_ROWS, "pytorch", EvaluationStatus.REWARD_HACK),
    # a thread left working by the first call only: that call is the untimed one when built ahead
    ("thread_in_first_call", "import threading, time, torch\n_first = [True]\n\n\ndef run(x, weight):\n"
     "    if _first[0]:\n        _first[0] = False\n"
     "        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
     "    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight\n",
     "pytorch", EvaluationStatus.REWARD_HACK),
])
def test_the_verdict_is_the_same_built_ahead_or_not(name, source, language, status):
    solution = _solution(name, source, language)
    verdicts = []
    for ahead in (False, True):
        config = BenchConfig(trials=3, timing=TIMING, build_ahead=ahead)
        trace = evaluate(RMSNORM, [WORKLOAD, WORKLOAD.model_copy(update={"uuid": "ahead-2"})], solution, "cpu",
                         config)
        verdicts.append([t.evaluation.status for t in trace])
    assert verdicts[0] == verdicts[1] == [status, status], (name, verdicts, trace[0].evaluation.log[-1500:])


def test_a_first_call_that_hangs_times_out_at_the_call_limit_built_ahead_or_not():
    solution = _solution("hangs", "def run(x, weight):\n    while True:\n        pass\n")
    for ahead in (False, True):
        config = BenchConfig(trials=3, timing=TIMING, build_ahead=ahead, timeout_s=4.0)
        ev = evaluate(RMSNORM, [WORKLOAD], solution, "cpu", config)[0].evaluation
        assert ev.status is EvaluationStatus.TIMEOUT, (ahead, ev.log[-1500:])
        assert "no result within 4 s" in ev.log, (ahead, ev.log[-1500:])


def test_a_solution_building_ahead_is_stopped_while_another_is_timed():
    """A build that works at import (a busy thread, a forked process outside its process
    group) runs between timed sections and not in them; it ends a reward hack, and the
    process it forked does not outlive it."""
    solution = _solution("busy_build", BUSY_BUILD)
    config = BenchConfig(trials=3, timing=TIMING, build_ahead=True)
    result: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: result.setdefault("traces", evaluate(RMSNORM, [WORKLOAD], solution, "cpu", config)))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        child = forked = None
        while time.monotonic() < deadline and forked is None:
            ahead = list(judge_module._AHEAD)
            if ahead:
                child = ahead[0].process.pid
                below = judge_module.descendants(child)
                forked = below[0] if below else None
            time.sleep(0.05)
        assert child is not None and forked is not None, "the build never got to fork"
        with device_lock("cpu"):
            with quiet():
                before = (_cpu_s(child), _cpu_s(forked))
                time.sleep(0.5)
                during = (_cpu_s(child) - before[0], _cpu_s(forked) - before[1])
                assert judge_module.all_stopped(child) and judge_module.all_stopped(forked)
            before = (_cpu_s(child), _cpu_s(forked))
            time.sleep(0.5)
            after = (_cpu_s(child) - before[0], _cpu_s(forked) - before[1])
        assert max(during) < 0.05, f"CPU seconds while stopped: {during}"
        assert min(after) > 0.1, f"CPU seconds once resumed: {after}"
    finally:
        worker.join(120)
    traces = result["traces"]
    assert traces[0].evaluation.status is EvaluationStatus.REWARD_HACK, traces[0].evaluation.log[-1500:]
    for _ in range(100):
        if not os.path.exists(f"/proc/{forked}") or Path(f"/proc/{forked}/stat").read_text().split(")")[1].split()[0] \
                in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the process the build forked ({forked}) outlived its evaluation")


def test_a_built_solution_waiting_for_its_turn_is_still_stopped_in_others_timing():
    """Between its build and its judged turn a solution's process waits; others' timed
    sections must stop it then too (it stays registered until it holds the lock)."""
    config = BenchConfig(trials=3, timing=TIMING, build_ahead=True)
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "traces", evaluate(RMSNORM, [WORKLOAD], _solution("torch_rows", TORCH_ROWS), "cpu", config)))
    lock = device_lock("cpu")
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not judge_module._AHEAD and time.monotonic() < deadline:
            time.sleep(0.01)
        child = next(iter(judge_module._AHEAD))
        with lock:  # another evaluation's judged turn: the worker builds, then waits for it
            end = time.monotonic() + 60
            while time.monotonic() < end and not _waiting(child.process.pid):
                time.sleep(0.05)
            time.sleep(0.5)
            assert child in judge_module._AHEAD, "built and waiting, it is no longer stopped in timed sections"
            with quiet():
                assert judge_module.all_stopped(child.process.pid)
    finally:
        worker.join(120)
    assert result["traces"][0].evaluation.status is EvaluationStatus.PASSED


def _waiting(pid: int) -> bool:
    """Whether the process's main thread sleeps and has used no CPU over 0.3 s (its
    build is done and it waits for a request)."""
    before = _cpu_s(pid)
    time.sleep(0.3)
    return _cpu_s(pid) - before < 0.01


def test_a_short_turn_goes_before_the_judged_turns_waiting():
    lock = DeviceLock()
    order: list[str] = []
    lock.__enter__()
    with lock:  # reentrant in its holder's thread
        pass

    def judged() -> None:
        with lock:
            order.append("judged")

    def first() -> None:
        with lock.first():
            order.append("first")

    waiting = [threading.Thread(target=judged), threading.Thread(target=first)]
    for t in waiting:
        t.start()
        time.sleep(0.2)  # waiting on the lock by now
    assert order == []
    lock.__exit__(None, None, None)
    for t in waiting:
        t.join(10)
    assert order == ["first", "judged"]


def test_the_judge_stays_undumpable_until_the_last_evaluation_ends():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if libc.prctl(3, 0, 0, 0, 0) != 1:
        pytest.skip("this process is not dumpable to begin with")
    one, two = not_dumpable(), not_dumpable()
    one.__enter__()
    two.__enter__()
    one.__exit__(None, None, None)  # one evaluation ends while another's solution is alive
    assert libc.prctl(3, 0, 0, 0, 0) == 0
    two.__exit__(None, None, None)
    assert libc.prctl(3, 0, 0, 0, 0) == 1


def test_local_evaluator_builds_two_ahead_on_the_cpu_and_judges_them_all(tmp_path):
    from solforge.search.evaluator import BUILT_AHEAD, EvaluationRequest, HarnessBackend, LocalEvaluator

    config = BenchConfig(trials=3, timing=TIMING, build_ahead=True)
    evaluator = LocalEvaluator(HarnessBackend(RMSNORM, config), ["cpu"])
    assert evaluator.capacity == 1 + BUILT_AHEAD
    assert LocalEvaluator(HarnessBackend(RMSNORM, config.model_copy(update={"build_ahead": False})),
                          ["cpu"]).capacity == 1
    evaluator.measure_baselines([WORKLOAD], [])
    try:
        futures = [evaluator.submit(EvaluationRequest(_solution(f"s{k}", NUMBA_ROWS, "numba"), (WORKLOAD,)))
                   for k in range(evaluator.capacity)]
        statuses = [[t.evaluation.status for t in f.result(300)] for f in futures]
    finally:
        with contextlib.suppress(Exception):
            evaluator.close()
    assert statuses == [[EvaluationStatus.PASSED]] * evaluator.capacity


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_a_harness_child_of_the_template_is_not_reaped_as_a_stray():
    """The judge's own sample calls (`recorder.implementation_ops`) run in children of the
    template; a solution ended in another thread, or a timed section, reaps strays
    (`reap_strays`) meanwhile and must leave them alone, and only them."""
    from solforge.bench.processes import _context, harness_child, reap_strays

    ctx = _context()
    kept = ctx.Process(target=_sleep, args=(30.0,), daemon=True)
    stray = ctx.Process(target=_sleep, args=(30.0,), daemon=True)
    try:
        with harness_child(kept):
            stray.start()  # started outside the registry: what a detached process looks like to the reaper
            killed = reap_strays()
            assert kept.pid not in killed and kept.is_alive()
            assert stray.pid in killed
    finally:
        for p in (kept, stray):
            if p.is_alive():
                p.kill()
            p.join(5)


# Built ahead, the solution's process has made one call (the prime) before the judged ones:
# an exploit keyed on "the Nth call" meets the judged sequence one call later. The red-team
# kernels keyed that way, moved by one, are caught by the same guards as unmoved and not
# built ahead (tests/bench/test_judge_exploits.py). One that caches its first result returns
# the prime's answer to the judge's fresh inputs: wrong at once, where unmoved it is caught
# as a cache.
SHIFTED = [
    pytest.param("forge_datagram_done", [("_calls[0] == 8", "_calls[0] == 9")], EvaluationStatus.REWARD_HACK,
                 "forged-reply", id="forge-datagram", marks=pytest.mark.slow),
    # its rebinding of socket.send, or its helper's heap walk, may be seen before its early DONE is
    pytest.param("forge_early_done_page", [("_calls[0] > 7", "_calls[0] > 8")], EvaluationStatus.REWARD_HACK,
                 "outside-call|harness-tamper", id="forge-signal-page", marks=pytest.mark.slow),
    # it also maps the arena from its first call's input address: the first judged one now
    pytest.param("output_shared_write_after_done", [("_calls[0] >= 7", "_calls[0] >= 8"),
                                                    ("if not _map:", "if not _map and _calls[0] >= 1:")],
                 EvaluationStatus.REWARD_HACK, "outside-call", id="shared-write-after-done", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,moves,status,guard", SHIFTED)
def test_an_exploit_keyed_on_the_call_count_is_caught_built_ahead(name, moves, status, guard):
    from redteam import WORKLOAD as RED_WORKLOAD
    from redteam import solution as red_solution

    sol = red_solution(name)
    content = sol.sources[0].content
    for unmoved, moved in moves:
        assert unmoved in content, f"{name} no longer has {unmoved!r}: update this test"
        content = content.replace(unmoved, moved)
    sol = sol.model_copy(update={"sources": [sol.sources[0].model_copy(update={"content": content})]})
    config = BenchConfig(trials=3, timing=TimingBudget(warmup_s=0.0, max_time_s=0.3, max_iters=16, min_iters=8),
                         build_ahead=True)
    ev = evaluate(RMSNORM, [RED_WORKLOAD], sol, "cpu", config)[0].evaluation
    assert ev.status is status, (name, ev.status, ev.log[-1500:])
    assert set(guard.split("|")) & {f.guard for f in ev.solforge.guard_findings}, (name, ev.log[-1500:])


def test_a_kernel_that_caches_its_first_result_is_wrong_on_the_first_judged_call_built_ahead():
    from exploits import solution as exploit_solution

    config = BenchConfig(trials=3, timing=TIMING, build_ahead=True)
    ev = evaluate(RMSNORM, [WORKLOAD], exploit_solution("cache_call_count"), "cpu", config)[0].evaluation
    assert ev.status is EvaluationStatus.INCORRECT_NUMERICAL, ev.log[-1500:]
    assert ev.log.startswith("call 0 "), ev.log[-1500:]


def test_the_judges_own_work_for_other_evaluations_never_overlaps_a_timed_section():
    """Another evaluation's checks and SOL reports run in this process outside the device
    lock (`outside_timing`): a timed section waits for such a block to end, and such a
    block waits for a timed section to end."""
    from solforge.bench.judge import outside_timing

    events: list[str] = []
    inside = threading.Event()

    def work(hold_s: float) -> None:
        with outside_timing():
            events.append("work starts")
            inside.set()
            time.sleep(hold_s)
            events.append("work ends")

    first = threading.Thread(target=work, args=(0.4,))
    first.start()
    inside.wait(10)
    with device_lock("cpu"), quiet():
        events.append("timing starts")
        inside.clear()
        second = threading.Thread(target=work, args=(0.0,))
        second.start()
        time.sleep(0.3)
        events.append("timing ends")
    first.join(10)
    second.join(10)
    assert events == ["work starts", "work ends", "timing starts", "timing ends", "work starts", "work ends"]


def test_a_request_to_a_process_building_ahead_waits_for_the_timed_section(tmp_path):
    """Sending to a process resumes it when stopped (`Child.send`): a request for a build
    ahead is sent only once no timed section runs, so the process stays stopped."""
    workdir = tmp_path / "w" / "solution"
    workdir.mkdir(parents=True)
    judge = Judge(RMSNORM, _solution("torch_rows", TORCH_ROWS), "cpu", BenchConfig(build_ahead=True), False,
                  workdir, 0)
    result: dict[str, object] = {}
    try:
        judge.spawn([WORKLOAD])
        pid = judge.child.process.pid
        with judge_module.building_ahead(judge.child):
            with device_lock("cpu"), quiet():
                assert judge_module.all_stopped(pid)
                sender = threading.Thread(target=lambda: result.setdefault("loaded", judge.load(ahead=True)))
                sender.start()
                time.sleep(0.5)
                assert judge_module.all_stopped(pid), "the request resumed the stopped process"
                assert sender.is_alive() and "loaded" not in result
            sender.join(60)
        assert result["loaded"].runnable
    finally:
        judge.close()


def test_a_process_that_runs_during_a_timed_section_is_killed_and_the_section_says_so():
    """Whatever resumes a process building ahead during a timed section (a process it
    detached that sends SIGCONT), the section ends with it killed and `intruded` set."""
    import signal
    import subprocess
    import sys

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)

    class Building:  # the two attributes a timed section reads of a child building ahead
        process = busy
        alive = True

    building = Building()
    try:
        with judge_module.building_ahead(building):
            with device_lock("cpu"), quiet() as section:
                assert judge_module.all_stopped(busy.pid)
                os.kill(busy.pid, signal.SIGCONT)  # what an escaped helper would do
                time.sleep(0.3)
            assert section.intruded
        assert busy.wait(10) == -signal.SIGKILL
    finally:
        if busy.poll() is None:
            busy.kill()
