"""How the solution's process waits for the judge's GO on the CPU (`handshake`): spinning
on the shared word, or asleep until a GO datagram when its threads fill the CPUs."""

from __future__ import annotations

import os
import threading
import time

import pytest

from solforge.bench.handshake import GO, READY, STOP, WAKE_BIT, HotLine, judge_round, serve_rounds, stop
from solforge.bench.messages import HOT_FRAME
from solforge.bench.timing import busy_threads, wake_for

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc/<pid>/task/*/schedstat")
PUBLISH_S = 0.3  # how long the judge takes to publish the inputs, in these tests


class _Server:
    """The solution's side of the handshake in a thread of this process, with its own
    CPU clock (so a test can tell spinning from sleeping)."""

    def __init__(self, line: HotLine) -> None:
        self.calls = 0
        self.error: BaseException | None = None
        self.ended = threading.Event()
        page_fd, sock_fd = (os.dup(fd) for fd in line.their_fds)
        self.thread = threading.Thread(target=self._serve, args=(page_fd, sock_fd), daemon=True)
        self.thread.start()

    def _serve(self, page_fd: int, sock_fd: int) -> None:
        try:
            serve_rounds(page_fd, sock_fd, lambda slot, profile: slot, self._call, lambda exc: None)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            self.error = exc
        finally:
            self.ended.set()

    def _call(self, slot: int) -> None:
        self.calls += 1

    def cpu_s(self) -> float:
        return time.clock_gettime(time.pthread_getcpuclockid(self.thread.ident))


def _round_cpu_s(wake: bool) -> tuple[float, int]:
    """(CPU seconds the solution's thread used during one round whose inputs take
    PUBLISH_S to publish, the round's raw ns)."""
    line = HotLine()
    server = _Server(line)
    try:
        judge_round(line, 0, 0, 10.0, wake=wake)  # the thread is up and serving
        before = server.cpu_s()
        raw = judge_round(line, 1, 1, 10.0, on_armed=lambda: time.sleep(PUBLISH_S), wake=wake)
        used = server.cpu_s() - before
        stop(line)
        assert server.ended.wait(10) and server.error is None and server.calls == 2
        return used, raw
    finally:
        line.close()


def test_asleep_for_go_the_solution_takes_no_cpu_while_the_judge_publishes():
    used, raw = _round_cpu_s(wake=True)
    assert used < 0.3 * PUBLISH_S, used  # blocked in the socket: no CPU while the judge works
    assert 0 < raw < PUBLISH_S * 1e9  # the clock starts at GO, after the publishing


def test_spinning_for_go_the_solution_takes_a_cpu_while_the_judge_publishes():
    used, raw = _round_cpu_s(wake=False)
    # spinning (it yields the GIL now and then, so it runs for most of it, not all of it)
    assert used > 0.5 * PUBLISH_S, used
    assert 0 < raw < PUBLISH_S * 1e9


def test_asleep_for_go_any_frame_but_this_calls_go_ends_the_rounds():
    for frame in ((READY, 0, 0), (GO, 1, 0), (7, 0, 0)):  # another READY, the GO of another call, garbage
        line = HotLine()
        try:
            server = _Server(line)
            line.send(READY, 0, WAKE_BIT)
            deadline = time.monotonic() + 10
            while line.page.get(16) != 1 and time.monotonic() < deadline:  # ARMED
                time.sleep(0.001)
            line.sock.send(HOT_FRAME.pack(*frame))
            assert server.ended.wait(10), frame
            assert isinstance(server.error, EOFError), (frame, server.error)
            assert server.calls == 0
        finally:
            line.close()


def test_asleep_for_go_a_stop_ends_the_rounds_without_a_call():
    line = HotLine()
    try:
        server = _Server(line)
        line.send(READY, 0, WAKE_BIT)
        line.send(STOP, 0, 0)
        assert server.ended.wait(10) and server.error is None and server.calls == 0
    finally:
        line.close()


def test_busy_threads_counts_the_threads_that_ran():
    before = {1: (100, 4, False), 2: (50, 2, False), 3: (7, 1, False), 6: (9, 3, True), 7: (9, 3, False)}
    after = {1: (180, 5, False),  # ran and slept again
             2: (50, 2, False),  # asleep throughout
             4: (3, 1, False),  # new, ran
             5: (0, 0, False),  # new, never ran
             6: (9, 3, True),  # spinning throughout: its run time not yet brought up to date
             7: (9, 4, False)}  # woken and asleep again within the same tick
    assert busy_threads(before, after) == 4
    assert busy_threads(None, after) is None and busy_threads(before, None) is None


@linux_only
def test_thread_activity_sees_a_thread_that_woke_and_slept_again_and_not_one_that_slept():
    from solforge.bench.processes import thread_activity

    wake, woke, finish = threading.Event(), threading.Event(), threading.Event()

    def woken() -> None:
        wake.wait()
        woke.set()
        finish.wait()  # asleep again

    threads = [threading.Thread(target=woken, daemon=True), threading.Thread(target=finish.wait, daemon=True)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.05)
        before = thread_activity(os.getpid())
        wake.set()
        assert woke.wait(5)
        time.sleep(0.05)
        after = thread_activity(os.getpid())
        assert before is not None and after is not None
        only = [{t.native_id: reading[t.native_id]} for t in threads for reading in (before, after)]
        assert busy_threads(only[0], only[1]) == 1  # woke, ran, asleep again
        assert busy_threads(only[2], only[3]) == 0  # asleep throughout
    finally:
        finish.set()


def test_wake_for_when_the_busy_threads_and_the_judge_outnumber_the_cpus():
    assert wake_for(2, 2) and wake_for(1, 1) and wake_for(16, 16)
    assert not wake_for(1, 2) and not wake_for(15, 16)
    assert not wake_for(None, 1)  # unknown: spin, as before


# -- through the judge ---------------------------------------------------------------------------

ROWS = 64  # enough rows that every numba thread of a machine with up to 64 CPUs gets some


def _evaluate(file: str, language: str, go_wait: str):
    from test_bench_evaluate import CONFIG, run  # this folder is on sys.path (pytest prepends it)

    from solforge.spec import Workload

    workload = Workload(uuid=f"t{ROWS}", axes={"T": ROWS}, solforge={"smoke": True})
    ev = run(file, language=language, workloads=[workload], config=CONFIG.model_copy(update={"go_wait": go_wait}))[0]
    assert ev.status.value == "PASSED", ev.log
    return ev.solforge.timing


@linux_only
def test_a_solution_whose_threads_fill_the_cpus_waits_for_go_asleep():
    timing = _evaluate("honest_rmsnorm_numba.py", "numba", "auto")  # prange over every numba thread
    assert timing.go_wait == "wake"
    assert timing.overhead_ms is not None and timing.count >= 2


@linux_only
def test_a_single_threaded_solution_spins_where_a_cpu_is_left_for_the_judge():
    timing = _evaluate("honest_rmsnorm.py", "pytorch", "auto")  # 64 x 64: torch runs it on one thread
    assert timing.go_wait == ("spin" if len(os.sched_getaffinity(0)) >= 2 else "wake")


@linux_only
def test_the_config_forces_either_way_and_both_pass():
    assert _evaluate("honest_rmsnorm_numba.py", "numba", "spin").go_wait == "spin"
    assert _evaluate("honest_rmsnorm.py", "pytorch", "wake").go_wait == "wake"
