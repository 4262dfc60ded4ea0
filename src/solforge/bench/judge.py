"""The judge: decides every verdict, and never runs the code it judges.

Three roles, three processes (see `processes`):

- the judge (this code, in the caller's process) draws every input seed from the
  operating system's randomness (`secrets`, i.e. os.urandom) per evaluation, writes
  the inputs into shared memory it owns, times the calls on the CPU, and compares the
  output bytes against the reference's with dtype and shape from its own records. It
  never imports a solution's code;
- the reference process computes the expected outputs; it never loads a solution;
- the solution's process, fresh per solution, reads its inputs from the judge's
  buffers and writes its outputs into them. Whatever bytes are there when it signals
  done are the output. Nothing it returns as a Python object is trusted, nor its
  reply beyond "done": its guard reports and op records can only add findings.

What the judge checks (each one a guard with its exploit in the tests):

- correctness on fresh secret inputs, `correctness` (several distributions; a ring of
  buffers, so address-keyed caches fail; one call repeats earlier values at another
  address, so a value-keyed cache that returns its old tensor is seen);
- the op record of every correctness call: forbidden calls however reached, and
  decoys (a solution declared numba, Triton or CUDA that launched none of its own
  kernels, or spent most of its time in torch compute ops);
- results carried across calls (by address, call count or content);
- timed calls (`timing`): outputs of a secret sample of timed iterations, at least 1
  in 8, checked after the loop; outputs that change after DONE; CPU work the
  solution's process does between timed calls; on a GPU, events that disagree with
  the judge's wall clock;
- replies nobody asked for on the solution's channel (forged replies).

Built ahead (`BenchConfig.build_ahead`, `run_judged`), a solution's process has made one
call before the judged ones, untimed and unjudged but under the guards of a call
(`Judge.prime`): a wrong answer on a process's very first call only is then not seen,
and a kernel that caches its first result answers the judge's first call wrong
(INCORRECT_NUMERICAL) rather than being caught as a cache. Two untrusted solutions are
then alive at once (one built ahead, stopped only in timed sections): native code in
one could signal the other's process during its correctness calls, which the audit
guard (Python-level) does not see; `BenchConfig.sandbox` (own PID namespace) turns
building ahead off. A process built ahead that does not stay stopped through a timed
section is killed, and that section is run again (`quiet`, `Quiet.intruded`). Its
build's and first call's timeouts keep counting while it is stopped.

What this does not cover: a solution running as the same user can, outside the
sandbox, read what the operating system lets that user read (the judge's memory
through /proc/<pid>/mem where the kernel's ptrace policy allows it: the judge marks
itself not dumpable while it judges, which stops other users' and unprivileged
processes, not root). `BenchConfig.sandbox` (bubblewrap: own PID namespace, no
network, read-only root) closes that.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import math
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeVar

from solforge.bench.arena import Arena, plan, slot_bytes
from solforge.bench.config import BenchConfig
from solforge.bench.correctness import CheckResult, compare_outputs, poison_, same_bits
from solforge.bench.guards.findings import Guard, dedupe, finding
from solforge.bench.guards.recorder import (
    TIMED_MARK,
    forbidden_findings,
    forbidden_names,
    record_findings,
    torch_compute_ops,
)
from solforge.bench.inputs import DISTRIBUTIONS, make_inputs
from solforge.bench.handshake import CallRaised, HotLine, OutOfStep, stop
from solforge.bench.messages import (
    Attach,
    Attached,
    Call,
    Called,
    Cooled,
    DefinitionError,
    Detach,
    ExpectedReply,
    Expect,
    ExpectSeeded,
    Failed,
    Hot,
    Load,
    Loaded,
    Prime,
    Primed,
    TimedOnDevice,
    TimeOnDevice,
)
from solforge.bench.processes import Child, ChildLost, ChildStartError, children_of, reap_strays, stat_state
from solforge.bench.timing import (
    CONTENDED_WARN_SHARE,
    IDLE_BUSY_SHARE,
    WIND_DOWN_MS,
    CacheFlusher,
    CpuLoop,
    busy_after_calls_ms,
    busy_threads,
    calibrate_handshake,
    contended_calls,
    contended_waits_ms,
    events_implausible,
    gap_limit_ms,
    is_stable,
    judge_threads,
    stats,
    time_cpu,
    wake_for,
)
from solforge.spec import Definition, EvaluationStatus, GuardFinding, Solution, SpecError, TimingStats, Workload

log = logging.getLogger(__name__)
_T = TypeVar("_T")

RING = 3  # buffers per workload: call k+3 sees call k's addresses with new values
MIN_SAMPLE_MS = 1e-4  # a sample at or below the handshake's overhead is recorded as this, in ms
KEEP_BYTES = 512 * 2**20  # timed outputs the judge keeps for its checks after the loop
CALIBRATION_ROUNDS = 30
MAX_CALIBRATED_COPY_BYTES = 256 * 2**20
REFERENCE_BATCH_BYTES = 256 * 2**20
# Torch compute inside the solution's own kernel launches (numba objmode), as a share of
# those launches' time, past which the kernel is torch's in a numba wrapper (median over calls).
NESTED_TORCH_SHARE = 0.05
PROFILE_EVERY = 8  # about 1 in 8 timed calls (drawn by the judge) runs under torch's profiler: not a sample


class Verdict(Exception):
    """Ends the evaluation of a workload with a failed status (raised inside the judge)."""

    def __init__(self, status: EvaluationStatus, message: str, findings: list[GuardFinding] | None = None,
                 max_absolute_error: float = 0.0, max_relative_error: float = 0.0, kill: bool = True):
        super().__init__(message)
        self.status, self.message, self.findings = status, message, findings or []
        self.max_absolute_error, self.max_relative_error = max_absolute_error, max_relative_error
        self.kill = kill


@dataclass
class WorkloadOutcome:
    """What the judge established for one workload that passed."""

    max_absolute_error: float
    max_relative_error: float
    calls: int
    reference_precision: str
    timing: TimingStats
    warnings: list[str] = field(default_factory=list)
    clocks: dict[str, Any] = field(default_factory=dict)


# -- shared children ---------------------------------------------------------------------------

_REFERENCES: dict[str, Child] = {}
_DEVICE_LOCKS: dict[str, DeviceLock] = {}
_LOCKS_GUARD = threading.Lock()


class DeviceLock:
    """What one evaluation holds on a device for its judged work: two timings on one
    device would disturb each other, and the device's reference process serves one
    evaluation at a time. Reentrant in its holder's thread. `first()` is a short turn
    (a new solution's process started and its handshake calibrated) that goes before
    the threads waiting for a judged turn, so that a solution built ahead
    (`building_ahead`) builds while another one is judged, not after it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._first_waiting = 0

    def _acquire(self, first: bool) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            self._first_waiting += first
            try:
                while self._owner is not None or (not first and self._first_waiting):
                    self._cond.wait()
            finally:
                self._first_waiting -= first
            self._owner, self._depth = me, 1

    def _release(self) -> None:
        with self._cond:
            assert self._owner == threading.get_ident(), "DeviceLock released by a thread that does not hold it"
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> DeviceLock:
        self._acquire(first=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    @contextmanager
    def first(self) -> Iterator[None]:
        """The lock for a short turn, ahead of the judged turns waiting."""
        self._acquire(first=True)
        try:
            yield
        finally:
            self._release()


def device_lock(device: str) -> DeviceLock:
    """The device's `DeviceLock`."""
    with _LOCKS_GUARD:
        return _DEVICE_LOCKS.setdefault(device, DeviceLock())


def reference_process(device: str, startup_timeout_s: float) -> Child:
    """The device's reference process (started when there is none alive)."""
    child = _REFERENCES.get(device)
    if child is None or not child.alive:
        if child is not None:
            child.kill()
        child = _REFERENCES[device] = Child("reference", device, startup_timeout_s)
    return child


def retire_reference(device: str) -> None:
    child = _REFERENCES.pop(device, None)
    if child is not None:
        child.kill()


_DUMPABLE_GUARD = threading.Lock()
_DUMPABLE = {"depth": 0, "before": 0}


@contextmanager
def not_dumpable() -> Iterator[None]:
    """This process is not dumpable for the block (PR_SET_DUMPABLE 0, Linux): processes of
    other users, and unprivileged ones, cannot read its memory or descriptors through
    /proc while a solution's process is alive. Counted across threads: restored only
    when the last open block ends (one evaluation's end must not make the judge
    dumpable while another's solution is alive)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl  # noqa: B018 (Linux only)
    except (OSError, AttributeError):
        yield
        return
    with _DUMPABLE_GUARD:
        if not _DUMPABLE["depth"]:
            _DUMPABLE["before"] = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
            if _DUMPABLE["before"] > 0:
                libc.prctl(4, 0, 0, 0, 0)
        _DUMPABLE["depth"] += 1
    try:
        yield
    finally:
        with _DUMPABLE_GUARD:
            _DUMPABLE["depth"] -= 1
            if not _DUMPABLE["depth"] and _DUMPABLE["before"] > 0:
                libc.prctl(4, _DUMPABLE["before"], 0, 0, 0)


# -- solutions built ahead -----------------------------------------------------------------------
# A solution's process may build (import, compile, one untimed call: `Judge.prime`) outside
# the device lock while another solution is judged. It must never run while anything is
# timed: every timed section (`quiet`) stops them all (SIGSTOP to their process groups)
# and resumes them after. A process stays registered until its evaluation holds the
# device lock, so one that has built and waits cannot run during another's timing either.

_AHEAD: set[Child] = set()
_AHEAD_GUARD = threading.Lock()
_QUIET = {"depth": 0}
STOP_WAIT_S = 2.0  # how long `quiet` waits for a stopped process's threads to be seen stopped


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (its children, theirs, ...), from /proc/<pid>/task/*/children."""
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children_of(todo.pop())
        found += kids
        todo += kids
    return found


def all_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped ('T' or 't' in /proc/<pid>/task/*/stat),
    or the process is gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        state = stat_state(f"/proc/{pid}/task/{task}/stat")
        if state is not None and state not in (b"T", b"t", b"Z", b"X"):
            return False
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _cpu_ns(pid: int) -> int | None:
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)  # the process's CPU clock (clock_getcpuclockid)
    except OSError:
        return None


def _kill_tree(pid: int) -> None:
    below = descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for p in (pid, *below):
        _signal(p, signal.SIGKILL)


def _stop(children: list[Child]) -> None:
    """SIGSTOP each child's process group, then every process below it (one that left
    the group is still its descendant), and wait until all their threads are stopped;
    then reap what was detached meanwhile (`reap_strays`) and walk again, until a pass
    finds everything stopped and nothing detached. A child whose tree does not stay
    stopped within STOP_WAIT_S is killed (fail closed: its evaluation is lost, the timed
    section is not shared). Every pid stopped is kept in _STOPPED for `quiet` to resume."""
    roots = [c.process.pid for c in children if c.process.pid is not None]
    deadline = time.monotonic() + STOP_WAIT_S
    for root in roots:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root, signal.SIGSTOP)  # the group first: nothing in it forks after this
    while True:
        pids: list[int] = []
        for root in roots:
            for pid in (root, *descendants(root)):
                _signal(pid, signal.SIGSTOP)
                _STOPPED.add(pid)
                pids.append(pid)
        while not all(all_stopped(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.0005)
        detached = reap_strays()
        settled = not detached and all(all_stopped(p) for p in pids) and \
            set(pids) >= {d for root in roots for d in (root, *descendants(root))}
        if settled:
            return
        if time.monotonic() >= deadline:
            for root in roots:
                if not all(all_stopped(p) for p in (root, *descendants(root))):
                    log.warning("a solution's process building ahead (pid %s) did not stay stopped for a timed "
                                "section: killed", root)
                    _kill_tree(root)
            return


_STOPPED: set[int] = set()


@contextmanager
def building_ahead(child: Child) -> Iterator[None]:
    """`child` builds outside the device lock for the block: it is stopped at once when a
    timed section is in progress, and in every timed section until the block ends."""
    with _AHEAD_GUARD:
        _AHEAD.add(child)
        if _QUIET["depth"]:
            _stop([child])
    try:
        yield
    finally:
        with _AHEAD_GUARD:
            _AHEAD.discard(child)  # if stopped now, resumed when the timed section ends


_WORK = threading.Condition()
_WORK_STATE = {"timing": 0, "working": 0}


@contextmanager
def outside_timing() -> Iterator[None]:
    """A block of the judge's own work for an evaluation that does not hold the device
    lock (its static checks before, its SOL reports after, a request sent to a process
    building ahead): it waits while a timed section runs, and a timed section waits for
    it to end. It must not take the device lock, nor enter a timed section, inside."""
    with _WORK:
        while _WORK_STATE["timing"]:
            _WORK.wait()
        _WORK_STATE["working"] += 1
    try:
        yield
    finally:
        with _WORK:
            _WORK_STATE["working"] -= 1
            _WORK.notify_all()


@dataclass
class Quiet:
    """What a timed section found at its end: `intruded`, a process building ahead (or one
    below it) used CPU during it, and was killed; the section's figures are not clean."""

    intruded: bool = False


@contextmanager
def quiet() -> Iterator[Quiet]:
    """A timed section (a handshake's calibration, a timing): the judge's work for other
    evaluations waits (`outside_timing`), and every solution's process building ahead,
    and every process below it, is stopped for the block (`_stop`); at its end, one that
    used CPU meanwhile is killed and the section says so (`Quiet.intruded`). The caller
    holds the device lock."""
    report = Quiet()
    with _WORK:
        _WORK_STATE["timing"] += 1
        while _WORK_STATE["working"]:
            _WORK.wait()
    clocks: dict[int, int | None] = {}
    try:
        with _AHEAD_GUARD:
            _QUIET["depth"] += 1
        try:
            with _AHEAD_GUARD:
                ahead = [c for c in _AHEAD if c.alive]
                if ahead:
                    reap_strays()
                    _stop(ahead)
                    clocks = {p: _cpu_ns(p) for c in ahead if c.process.pid is not None
                              for p in (c.process.pid, *descendants(c.process.pid))}
            yield report
        finally:
            with _AHEAD_GUARD:
                for pid, before in clocks.items():
                    after = _cpu_ns(pid)
                    if before is not None and after is not None and after > before:
                        log.warning("a process building ahead (pid %s) ran %.3f ms during a timed section: killed",
                                    pid, (after - before) / 1e6)
                        _kill_tree(pid)
                        report.intruded = True
                _QUIET["depth"] -= 1
                if not _QUIET["depth"]:
                    for pid in _STOPPED:
                        _signal(pid, signal.SIGCONT)
                    _STOPPED.clear()
    finally:
        with _WORK:
            _WORK_STATE["timing"] -= 1
            _WORK.notify_all()


def timed_section(run: Callable[[], _T]) -> _T:
    """`run()` in a timed section (`quiet`), and once more when a process building ahead
    ran during it (`Quiet.intruded`: it is killed by then)."""
    for _ in range(2):
        with quiet() as section:
            result = run()
        if not section.intruded:
            break
    return result


def host_memory_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes; None where unreadable."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_problem(definition: Definition, axes: dict[str, int], device: str) -> str | None:
    """Why a workload cannot fit in this machine's memory (one line), or None.

    Estimate, host side: the judge's ring of inputs and outputs and its own copies
    (RING + 2 sets), the reference's arena and its float64 upcast of inputs and outputs
    (up to 8 / itemsize times each), and the solution's own copy of each; checked
    against MemAvailable. A GPU's memory is not estimated here."""
    layout = plan(definition, axes, 1)
    in_b, out_b = slot_bytes(layout.inputs[0]), slot_bytes(layout.outputs[0])
    widen = max([8 // max(t.dtype_bytes, 1) for t in _dtypes(definition)] or [1])
    need = in_b * (RING + 3 + widen) + out_b * (RING + 4 + widen) + min(out_b * 30, KEEP_BYTES)
    avail = host_memory_available_bytes()
    if avail is None or need <= 0.8 * avail:
        return None
    gib = 2**30
    return (f"skipped: needs about {need / gib:.1f} GiB of host memory (inputs {in_b / gib:.2f} GiB, outputs "
            f"{out_b / gib:.2f} GiB, with the reference's float64 copies and the judge's buffers); "
            f"{avail / gib:.1f} GiB available")


@dataclass
class _DtypeBytes:
    dtype_bytes: int


def _dtypes(definition: Definition) -> list[_DtypeBytes]:
    out = []
    for spec in [*definition.inputs.values(), *definition.outputs.values()]:
        try:
            out.append(_DtypeBytes(spec.dtype.to_torch().itemsize))
        except (AttributeError, TypeError):
            continue
    return out


# -- one solution ----------------------------------------------------------------------------------


class Judge:
    """Evaluates one solution on a device. `run_workload` gives one workload's outcome or
    raises Verdict / ChildLost; `close` ends the solution's process."""

    def __init__(self, definition: Definition, solution: Solution, device: str, config: BenchConfig, trusted: bool,
                 workdir: Path, flush_bytes: int, cutoff_ms: Mapping[str, float] | None = None):
        self.definition, self.solution, self.device = definition, solution, device
        self.config, self.trusted, self.workdir = config, trusted, workdir
        self.flush_bytes = flush_bytes
        self.child: Child | None = None
        self.cutoff_ms = dict(cutoff_ms or {})  # workload uuid -> latency past which timing stops
        self.line: HotLine | None = None
        self.overhead_ms: dict[int, float] = {}
        self.load_log = ""
        self.own_kernels: list[str] = []
        self.wanted = forbidden_names(definition) if not trusted else {}
        from solforge.hardware import Device, TimerKind

        # The judge times the calls itself where the device kind's timer is the host clock.
        self.host_timed = Device.parse(device).timer is TimerKind.perf_counter
        self.dps = solution.spec.destination_passing_style
        self._flusher: CacheFlusher | None = None
        self._iterations = 0
        self.limit: Any = None  # limits.MemoryLimit on the current solution's process
        self.loaded: Loaded | None = None  # the current solution's process's Loaded reply

    # -- the solution's process ---------------------------------------------------------------

    def start(self, workloads: list[Workload]) -> Loaded:
        """A fresh solution's process: calibrate the handshake, then build the solution.
        Returns the Loaded reply; raises Verdict for a build failure (COMPILE_ERROR) or a
        reward hack found at build time, ChildLost, ChildStartError."""
        self.spawn(workloads)
        return self.load()

    def spawn(self, workloads: list[Workload]) -> None:
        """Start a fresh solution's process and calibrate its handshake (a timed section:
        `quiet`), before any solution code is in it. Raises ChildLost, ChildStartError."""
        sandbox = str(self.workdir.parent) if self.config.sandbox else None
        self.child = child = Child("solution", self.device, self.config.startup_timeout_s, sandbox_dir=sandbox)
        if self.config.memory_limit_gb is not None:
            from solforge.bench.limits import MemoryLimit

            self.limit = MemoryLimit.apply(child.process.pid, int(self.config.memory_limit_gb * 2**30))
        if self.host_timed:
            sizes = sorted({0 if self.dps else min(self._out_bytes(w), MAX_CALIBRATED_COPY_BYTES) for w in workloads})
            if self.line is None:
                self.line = HotLine()
            try:
                line = self.line
                medians = timed_section(lambda: calibrate_handshake(child, line, child.new_id(), sizes,
                                                                    CALIBRATION_ROUNDS, self.config.timeout_s))
            except OutOfStep as lost:
                raise ChildLost(EvaluationStatus.TIMEOUT if lost.timeout else EvaluationStatus.RUNTIME_ERROR,
                                f"calibrating the handshake: {lost}") from None
            self.overhead_ms = dict(zip(sizes, medians))

    def _request(self, message: Any, timeout_s: float, ahead: bool) -> Any:
        """`message` to the solution's process and its reply. `ahead` (the process builds
        outside the device lock): sent only when no timed section runs (`outside_timing`),
        since sending resumes a stopped process (`Child.send`)."""
        child = self.child
        assert child is not None
        if not ahead:
            return child.request(message, timeout_s)
        with outside_timing():
            child.send(message)
        return child.receive(message.id, timeout_s)

    def load(self, ahead: bool = False) -> Loaded:
        """Build the solution in the process `spawn` started (`ahead`: see `_request`).
        Returns the Loaded reply; raises Verdict for a build failure (COMPILE_ERROR) or a
        reward hack found at build time, ChildLost."""
        child = self.child
        assert child is not None
        reply = self._request(
            Load(id=child.new_id(), definition=self.definition.model_dump(mode="json"),
                 solution=self.solution.model_dump(mode="json"), workdir=str(self.workdir), trusted=self.trusted,
                 build_timeout_s=self.config.build_timeout_s, compile_cache_dir=self.config.compile_cache_dir),
            self.config.build_timeout_s, ahead)
        if isinstance(reply, Failed):
            raise Verdict(reply.status, reply.log, reply.findings)
        assert isinstance(reply, Loaded)
        self.load_log, self.own_kernels = reply.log, reply.own_kernels
        self.loaded = reply
        return reply

    def prime(self, workload: Workload, ahead: bool = False) -> None:
        """The built solution's one untimed, unjudged call, on inputs of `workload` that its
        process draws (`messages.Prime`), within `timeout_s` like a judged request
        (`ahead`: see `_request`). Raises Verdict for a reward hack the guards saw in it,
        ChildLost."""
        child = self.child
        assert child is not None
        reply = self._request(Prime(id=child.new_id(), workload=workload.model_dump(mode="json")),
                              self.config.timeout_s, ahead)
        if isinstance(reply, Failed):
            raise Verdict(reply.status, reply.log, reply.findings)
        assert isinstance(reply, Primed)

    def _out_bytes(self, workload: Workload) -> int:
        axes = self.definition.resolve_axes(workload.axes)
        return slot_bytes(plan(self.definition, axes, 1, inputs=False).outputs[0])

    def next_iteration(self) -> int:
        """A fresh block of iteration numbers for one loop (the GO word never repeats a value)."""
        self._iterations += 10_000_000
        return self._iterations

    def overhead_for(self, out_bytes: int) -> float:
        """The calibrated handshake overhead, ms, for a call that hands over `out_bytes`:
        the handshake with GO spun on, whichever way the timing waits for GO. Waiting
        asleep adds the wake-up's latency to every call, and it stays in the figure: a
        solution whose own thread watched the GO word would not spend it, so subtracting
        it would credit that solution with time it never took."""
        if not self.overhead_ms:
            return 0.0
        if self.dps:
            return self.overhead_ms.get(0, 0.0)
        size = min(out_bytes, MAX_CALIBRATED_COPY_BYTES)
        if size in self.overhead_ms:
            base = self.overhead_ms[size]
        else:
            base = self.overhead_ms[min(self.overhead_ms, key=lambda s: abs(s - size))]
        return base * (out_bytes / size) if out_bytes > MAX_CALIBRATED_COPY_BYTES and size else base

    def close(self) -> None:
        if self.child is not None:
            self.child.close()
            self.child = None
        self.loaded = None
        self._release_limit()
        if self.line is not None:
            self.line.close()
            self.line = None

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child = None
        self.loaded = None
        self._release_limit()

    def lost(self, lost: ChildLost) -> str:
        """What a lost solution's process died of, the memory limit's verdict included."""
        if self.limit is not None and self.limit.oom_killed():
            return (f"{lost.message}: killed by the out-of-memory killer at the memory limit "
                    f"({self.limit.describe()})")
        return lost.message

    def _release_limit(self) -> None:
        if self.limit is not None:
            self.limit.release()
            self.limit = None

    # -- one workload ------------------------------------------------------------------------------

    def run_workload(self, workload: Workload) -> WorkloadOutcome:
        assert self.child is not None
        run = WorkloadRun(self, workload)
        try:
            run.attach()
            check = run.correctness()
            outcome = run.timing(check)
        finally:
            run.close()
        return outcome


class WorkloadRun:
    """The judge's work on one workload of one solution: its arenas and its records."""

    def __init__(self, judge: Judge, workload: Workload):
        self.judge, self.workload = judge, workload
        self.definition, self.config, self.device = judge.definition, judge.config, judge.device
        self.child = judge.child
        assert self.child is not None
        self.ref = reference_process(self.device, self.config.startup_timeout_s)
        self.axes = self.definition.resolve_axes(workload.axes)
        self.key = f"{workload.uuid}-{secrets.token_hex(4)}"
        self.root = self.config.dataset_root
        self.sol_arena = Arena.create(plan(self.definition, self.axes, RING), "solforge-solution")
        per_set = slot_bytes(self.sol_arena.layout.inputs[0]) + slot_bytes(self.sol_arena.layout.outputs[0])
        # Reference calls are batched: as many input sets per request as fit in REFERENCE_BATCH_BYTES.
        self.batch = max(1, min(2 * self.config.trials + 1, REFERENCE_BATCH_BYTES // max(per_set, 1)))
        self.ref_arena = Arena.create(plan(self.definition, self.axes, self.batch), "solforge-reference")
        self.kept_arena: Arena | None = None
        self.attached: list[tuple[Child, str]] = []
        self.findings: list[GuardFinding] = []
        self.timeout_s = self.config.timeout_s
        self.flushed_bytes = 0  # by the CPU cache flush before timed calls
        self.in_hot_loop = False

    def close(self) -> None:
        if self.in_hot_loop and self.child.alive:  # left mid-loop by a verdict: it answers nothing now
            self.child.kill()
        for child, key in self.attached:
            if child.alive:
                try:
                    child.request(Detach(id=child.new_id(), workload=key), 60.0)
                except ChildLost:
                    pass
        for arena in (self.sol_arena, self.ref_arena, self.kept_arena):
            if arena is not None:
                arena.close()

    def attach(self) -> None:
        wl = self.workload.model_dump(mode="json")
        root = str(self.root) if self.root else None
        self._attach(self.child, self.key, self.sol_arena, workload_data=wl, dataset_root=root)
        self._attach(self.ref, self.key, self.ref_arena, definition=self.definition.model_dump(mode="json"),
                     workload_data=wl, dataset_root=root)

    def _attach(self, child: Child, key: str, arena: Arena, **fields: Any) -> None:
        assert arena.fd is not None
        reply = self._ask(child, Attach(id=child.new_id(), workload=key, layout=arena.layout, **fields), (arena.fd,))
        if not isinstance(reply, Attached):
            raise Verdict(EvaluationStatus.RUNTIME_ERROR, f"attach: {reply}")
        self.attached.append((child, key))

    def _ask(self, child: Child, message: Any, fds: tuple[int, ...] = (), timeout_s: float | None = None) -> Any:
        """One request; a DefinitionError reply raises SpecError, a reference's failure a
        Verdict that blames the definition or the workload, not the solution."""
        if child is self.child and child.pending_bytes():
            self._forged("before a request")
        try:
            reply = child.request(message, timeout_s or self.timeout_s, fds)
        except ChildLost as lost:
            if child is self.ref:
                retire_reference(self.device)
                raise Verdict(lost.status, f"the reference process: {lost.message} (the workload may be too large "
                                           "for this machine; not the solution's fault)", kill=False) from None
            raise
        if child is self.child and child.unsolicited:
            self._forged("")
        if isinstance(reply, DefinitionError):
            raise SpecError(reply.message)
        if child is self.ref and isinstance(reply, Failed):
            raise Verdict(reply.status, f"{reply.log} (a defect of the definition or the workload, not the "
                                        "solution's)", kill=False)
        return reply

    def _forged(self, when: str) -> None:
        what = "; ".join(self.child.unsolicited) or f"unexpected bytes {when}"
        raise Verdict(EvaluationStatus.REWARD_HACK, f"forged reply: {what} on the solution's channel",
                      [finding(Guard.FORGED_REPLY, f"forged reply: the judge received {what}, which it did not ask "
                                                   "for, on the solution's channel")])

    # -- inputs and expected outputs ---------------------------------------------------------------

    def inputs(self, seed: int, distribution: str) -> dict[str, Any]:
        return make_inputs(self.definition, self.workload, self.axes, seed, distribution, "cpu", self.root)

    def expected(self, sets: list[dict[str, Any]]) -> tuple[list[list[Any]], str]:
        """The reference's outputs (copies) on each input set, and its precision; one
        request per `batch` sets."""
        layout = self.ref_arena.layout
        out: list[list[Any]] = []
        precision = "native"
        for start in range(0, len(sets), self.batch):
            chunk = sets[start:start + self.batch]
            for slot, inputs in enumerate(chunk):
                self.ref_arena.write(layout.inputs[slot], inputs)
            reply = self._ask(self.ref, Expect(id=self.ref.new_id(), workload=self.key,
                                               slots=list(range(len(chunk)))))
            assert isinstance(reply, ExpectedReply)
            precision = reply.precision
            out += [[self.ref_arena.view(t).clone() for t in layout.outputs[slot].tensors]
                    for slot in range(len(chunk))]
        return out, precision

    def outputs(self, slot: int) -> list[Any]:
        return [self.sol_arena.view(t).clone() for t in self.sol_arena.layout.outputs[slot].tensors]

    def poison(self, slot: int) -> None:
        for t in self.sol_arena.layout.outputs[slot].tensors:
            if not t.scalar:
                poison_(self.sol_arena.view(t))

    # -- correctness ---------------------------------------------------------------------------------

    def correctness(self) -> dict[str, Any]:
        """The correctness calls (see `correctness`); returns the errors and precision.
        Raises Verdict at the first failure."""
        trials = self.config.trials
        calls = 2 * trials + 1
        seeds = [secrets.randbits(62) for _ in range(calls)]
        dists = [DISTRIBUTIONS[k % len(DISTRIBUTIONS)] for k in range(calls)]
        repeat = 1 if (calls - 1) % RING != 1 % RING else 2
        seeds[-1], dists[-1] = seeds[repeat], dists[repeat]
        history: list[tuple[int, list[Any], list[Any], bool]] = []  # (slot, outputs, expected, correct)
        max_abs = max_rel = 0.0
        precision = "native"
        shares: list[float] = []
        nested: list[float] = []  # per call: the share of its own kernel time that was torch inside its launches
        own_before = 0.0
        last: Called | None = None
        inputs = [self.inputs(seeds[k], dists[k]) for k in range(calls)]
        all_expected, precision = self.expected(inputs)
        for k in range(calls):
            slot = k % RING
            values, expected = inputs[k], all_expected[k]
            self.sol_arena.write(self.sol_arena.layout.inputs[slot], values)
            self.poison(slot)
            where = f"call {k} ({dists[k]} inputs)"
            reply = self._ask(self.child, Call(id=self.child.new_id(), workload=self.key, slot=slot,
                                               record=not self.judge.trusted))
            if isinstance(reply, Failed):
                raise Verdict(reply.status, f"{where}: {reply.log}", reply.findings, max_abs, max_rel)
            assert isinstance(reply, Called)
            last = reply
            if reply.findings:
                raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in reply.findings),
                              reply.findings, max_abs, max_rel)
            self._inputs_unchanged(slot, values, where)
            outs = self.outputs(slot)
            result = compare_outputs(outs, expected, self.definition, self.judge.dps)
            if not self.judge.trusted:
                found = self._cache_findings(k, slot, outs, result, history, reply, seeds, dists)
                found += record_findings(reply.record, self.judge.wanted)
                if found:
                    raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in found), found,
                                  max_abs, max_rel)
            if not result.passed:
                raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL, f"{where}: {result.message}", [],
                              max(max_abs, result.max_absolute_error), max(max_rel, result.max_relative_error))
            max_abs, max_rel = max(max_abs, result.max_absolute_error), max(max_rel, result.max_relative_error)
            history.append((slot, outs, expected, True))
            own_ms = reply.own_kernel_ms - own_before
            own_before = reply.own_kernel_ms
            if k > 0 and reply.record is not None:
                # The solution's own kernel time exclusive of torch run inside its launches.
                if own_ms > 0:
                    nested.append(min(reply.record.nested_ms / own_ms, 1.0))
                own_ms = max(own_ms - reply.record.nested_ms, 0.0)
                found = self._counter_findings(k, own_ms, reply)
                if found:
                    raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in found), found,
                                  max_abs, max_rel)
            if k > 0 and reply.record is not None and reply.record.compute_ms + own_ms > 0:
                # Torch's compute against the solution's own kernels, both timed inside the
                # same call: the recorder's own overhead is in neither.
                shares.append(reply.record.compute_ms / (reply.record.compute_ms + own_ms))
        if not self.judge.trusted and last is not None:
            found = self._decoy_findings(calls, last, shares, nested)
            if found:
                raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in found), found, max_abs,
                              max_rel)
        return {"max_abs": max_abs, "max_rel": max_rel, "calls": calls, "precision": precision}

    def _inputs_unchanged(self, slot: int, values: dict[str, Any], where: str) -> None:
        import torch

        for t in self.sol_arena.layout.inputs[slot].tensors:
            value = values[t.name]
            if isinstance(value, torch.Tensor) and not same_bits(self.sol_arena.view(t), value):
                raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL, f"{where}: input '{t.name}' was modified by the "
                                                                    "call (a solution must not write its inputs)")

    def _cache_findings(self, k: int, slot: int, outs: list[Any], result: CheckResult,
                        history: list[tuple[int, list[Any], list[Any], bool]], reply: Called,
                        seeds: list[int], dists: list[str]) -> list[GuardFinding]:
        """Results carried over from an earlier call: a wrong output that equals an
        earlier call's result (by address when that call used the same buffers, else by
        call count), or a returned tensor that is the very storage an earlier call
        returned on the same values (by content)."""
        found = []
        if not result.passed:
            for j in range(len(history) - 1, -1, -1):
                prev_slot, prev_outs, prev_expected, _ = history[j]
                if any(_informative(e) for e in prev_expected) and all(
                        same_bits(a, b) for a, b in zip(outs, prev_outs)):
                    how = "address" if prev_slot == slot else "call count"
                    found.append(finding(Guard.CACHING, f"caching results across calls (by {how}): call {k} misses "
                                                        f"its reference but returned call {j}'s result"))
                    break
        j = reply.same_storage_as
        if j is not None and j < len(seeds):
            how = "content" if (seeds[j], dists[j]) == (seeds[k], dists[k]) else "call count"
            found.append(finding(Guard.CACHING, f"caching results across calls (by {how}): call {k} returned the "
                                                f"storage call {j} returned"))
        return found

    def _counter_findings(self, k: int, own_ms: float, reply: Called) -> list[GuardFinding]:
        """The launch counter against the call's wall time: the solution's own kernel time
        (exclusive of torch inside it) and torch's compute are disjoint spans inside the
        call, so together they fit in it (10% and 0.05 ms for the clocks). More is a
        counter written outside a launch."""
        if self.judge.trusted or not self.judge.solution.spec.language.launches_own_kernels:
            return []
        compute_ms = reply.record.compute_ms if reply.record is not None else 0.0
        if own_ms + compute_ms <= 1.1 * reply.solution_ms + 0.05:
            return []
        return [finding(Guard.HARNESS_TAMPER, f"harness tamper: call {k}'s launch counters report {own_ms:.3f} ms in "
                                              f"its own kernels beside {compute_ms:.3f} ms of torch compute, in a call "
                                              f"of {reply.solution_ms:.3f} ms (the counters were written outside a "
                                              "launch)")]

    def _decoy_findings(self, calls: int, last: Called, shares: list[float],
                        nested: list[float] = ()) -> list[GuardFinding]:
        language = self.judge.solution.spec.language
        if not language.launches_own_kernels:
            return []
        if last.launches == 0:
            defined = (f"it defines {', '.join(self.judge.own_kernels)}" if self.judge.own_kernels
                       else "no kernel of its own was found in its modules")
            return [finding(Guard.DECOY, f"decoy: declared {language.value} but launched none of its own kernels in "
                                         f"{calls} calls ({defined})")]
        if last.profiled_own is False:
            seen = ", ".join(last.profiled_names) or "no kernel"
            return [finding(Guard.DECOY, f"decoy: declared {language.value} but none of its own kernels ran on the "
                                         f"device (the profiler saw {seen})")]
        if nested and sorted(nested)[len(nested) // 2] > NESTED_TORCH_SHARE:
            share = sorted(nested)[len(nested) // 2]
            return [finding(Guard.DECOY, f"decoy: declared {language.value} but torch compute ops ran inside its own "
                                         f"kernel launches (an objmode block?): {share:.0%} of its own kernel time")]
        if shares:
            share = sorted(shares)[len(shares) // 2]
            if share > 0.5:
                record = last.record
                ops = torch_compute_ops(record) if record is not None else "?"
                return [finding(Guard.DECOY, f"decoy: declared {language.value} but torch compute ops ({ops}) took "
                                             f"{share:.0%} of the time its own kernels and torch's compute took")]
        return []

    # -- timing --------------------------------------------------------------------------------------

    def timing(self, check: dict[str, Any]) -> WorkloadOutcome:
        budget = self.config.timing_for(self.device)
        warnings: list[str] = []
        clocks: dict[str, Any] = {}
        from solforge.bench.languages import plugin_for

        interpreted = not plugin_for(self.judge.solution.spec.language).timed_is_measurement(self.device)
        timed = self._time_once(budget, clocks)
        if timed.cut:
            warnings.append(f"cut: timing stopped after {timed.count} samples, median {timed.median_ms:.4g} ms past "
                            f"the cut-off of {self.judge.cutoff_ms[self.workload.uuid]:.4g} ms")
        elif self.judge.host_timed and not is_stable(timed):
            rerun = self.config.rerun_unstable  # not for a screening figure: the search re-times what matters
            if rerun:
                timed = self._time_once(budget, clocks).model_copy(update={"reruns": 1})
            if not rerun or not is_stable(timed):
                timed = timed.model_copy(update={"unstable": True})
                warnings.append(f"unstable timing: {timed.count} samples, IQR {timed.iqr_ms:.4g} ms on a median of "
                                f"{timed.median_ms:.4g} ms " + ("after a re-run (a busy machine?)" if rerun
                                                                 else "(a screening figure, not re-run)"))
        if timed.contended_calls > CONTENDED_WARN_SHARE * timed.count:
            waits = sorted(contended_waits_ms(timed.raw_samples_ms, timed.run_queue_wait_ms))
            warnings.append(f"contended: in {timed.contended_calls} of {timed.count} timed calls the solution's "
                            f"threads waited for a CPU (median wait {waits[len(waits) // 2]:.3g} ms; median call "
                            f"{timed.median_ms:.4g} ms): the machine's cores were oversubscribed, "
                            "so the figure times the scheduler too (a busy machine, or a solution using every core "
                            "while the judge works between calls)")
        if interpreted:
            timed = timed.model_copy(update={"is_performance_measurement": False})
            warnings.append(f"{self.judge.solution.spec.language.value} on {self.device} runs under an interpreter: "
                            "the time is the interpreter's, not a kernel's")
        return WorkloadOutcome(check["max_abs"], check["max_rel"], check["calls"], check["precision"], timed,
                               warnings, clocks)

    def _time_once(self, budget: Any, clocks: dict[str, Any]) -> TimingStats:
        return timed_section(lambda: self._time_cpu(budget) if self.judge.host_timed
                             else self._time_device(budget, clocks))

    def _time_cpu(self, budget: Any) -> TimingStats:
        out_layout = self.sol_arena.layout.outputs
        out_bytes = slot_bytes(out_layout[0])
        seeds: dict[int, int] = {}
        kept: dict[int, list[Any]] = {}
        last_done: dict[int, tuple[int, list[Any]]] = {}
        keep_n = max(8, KEEP_BYTES // max(out_bytes, 1))
        chooser = secrets.SystemRandom()
        seen_timed = [0]
        warm_start, timed_start = self.judge.next_iteration(), self.judge.next_iteration()
        flush, method = self._cpu_flush()
        self.flushed_bytes = 0

        staged: dict[int, tuple[int, dict[str, Any]]] = {}
        published: dict[int, tuple[int, dict[str, Any]]] = {}  # slot -> (iteration, the inputs it was given)
        dists: dict[int, str] = {}
        probing: set[int] = set()
        probe_order = chooser.sample([d for d in DISTRIBUTIONS if d != "normal"], len(DISTRIBUTIONS) - 1)
        probes: dict[int, list[Any]] = {}  # profiled calls (not samples): inputs of any distribution, all checked

        def prepare(i: int, slot: int, purpose: str) -> None:
            seeds[i] = secrets.randbits(62)
            dists[i] = "normal"
            if purpose == "probe":  # every distribution but normal once, in a secret order, then any
                first = len(probing) < len(probe_order)
                dists[i] = probe_order[len(probing)] if first else chooser.choice(DISTRIBUTIONS)
                probing.add(i)
            staged[slot] = (i, self.inputs(seeds[i], dists[i]))  # private until the call is armed
            self.poison(slot)

        def publish(slot: int) -> None:
            published[slot] = staged.pop(slot)
            self.sol_arena.write(self.sol_arena.layout.inputs[slot], published[slot][1])

        def keep(i: int, slot: int) -> None:
            outs = self.outputs(slot)
            last_done[slot] = (i, outs)
            if i < timed_start:  # a warm-up call: checked for changes after DONE, not against the reference
                return
            if i in probing:
                probes[i] = outs
                return
            seen_timed[0] += 1
            if len(kept) < keep_n:
                kept[i] = outs
            else:  # reservoir sampling, with the judge's secret randomness
                j = chooser.randrange(seen_timed[0])
                if j < keep_n:
                    del kept[chooser.choice(list(kept))]
                    kept[i] = outs

        def before_reuse(slot: int) -> None:
            if slot in published:  # a timed call may not write its inputs either (in the call or after DONE)
                i, values = published[slot]
                self._inputs_unchanged(slot, values, f"timed call {i - timed_start}" if i >= timed_start
                                       else f"warm-up call {i - warm_start}")
            if slot in last_done:
                i, outs = last_done[slot]
                now = self.outputs(slot)
                changed = [t.name for t, a, b in zip(out_layout[slot].tensors, outs, now) if not same_bits(a, b)]
                if changed:
                    raise Verdict(EvaluationStatus.REWARD_HACK, f"output(s) {changed} of call {i} changed after it "
                                  "signalled done", [finding(Guard.OUTSIDE_CALL, f"work outside the timed call: "
                                                     f"output(s) {changed} of timed call {i} were written after the "
                                                     "call signalled done")])

        child, line = self.child, self.judge.line
        assert line is not None
        request = Hot(id=child.new_id(), workload=self.key)
        if child.pending_bytes() or line.pending():
            self._forged("before the timed loop")
        child.send(request, fds=line.their_fds)
        self.in_hot_loop = True  # until the reply after STOP: a failure here leaves the process mid-loop
        loop = CpuLoop(line, prepare, publish, keep, before_reuse, flush, RING, self.timeout_s,
                       profile_every=0 if self.judge.trusted else PROFILE_EVERY, min_profiled=len(probe_order))
        threads_before = _tasks(child)
        try:
            with judge_threads(self.config.judge_threads):
                run_before = child.thread_activity()
                time_cpu(child, loop, budget.warmup_s, 0.0, 0, 0, first_iteration=warm_start)
                go_wait = self.config.go_wait
                busy = busy_threads(run_before, child.thread_activity())
                loop.wake = go_wait == "wake" or (go_wait == "auto" and wake_for(busy, _cpus(child)))
                loop.pool_threads = max(0, (busy or 1) - 1)
                cutoff = self.judge.cutoff_ms.get(self.workload.uuid)
                overhead = self.judge.overhead_for(slot_bytes(out_layout[0]))
                run = time_cpu(child, loop, 0.0, budget.max_time_s, budget.max_iters, budget.min_iters,
                               first_iteration=timed_start,
                               cutoff_raw_ms=None if cutoff is None else cutoff + overhead)
                # where thread pools may wind down between calls the gaps allow them that much, and
                # the process must then go quiet (see WIND_DOWN_MS)
                after_calls = None if self.judge.trusted or not loop.pool_threads else busy_after_calls_ms(child)
        except CallRaised:
            stop(line)
            reply = child.receive(request.id, self.timeout_s)
            self.in_hot_loop = False
            if isinstance(reply, Failed):
                raise Verdict(reply.status, reply.log, reply.findings) from None
            raise Verdict(EvaluationStatus.RUNTIME_ERROR, "a timed call failed") from None
        except OutOfStep as lost:
            if lost.timeout:
                child.kill()
                raise ChildLost(EvaluationStatus.TIMEOUT, f"{lost}: the process was killed (SIGKILL)") from None
            raise Verdict(EvaluationStatus.REWARD_HACK, str(lost), [finding(Guard.FORGED_REPLY, str(lost))]) from None
        stop(line)
        reply = child.receive(request.id, self.timeout_s)
        self.in_hot_loop = False
        if isinstance(reply, Failed):
            raise Verdict(reply.status, reply.log, reply.findings)
        assert isinstance(reply, Cooled)
        for slot in list(last_done):
            before_reuse(slot)
        found = list(reply.findings)
        if not self.judge.trusted:
            from solforge.bench.messages import OpRecord

            if run.profiled and TIMED_MARK not in reply.profiled:
                found.append(finding(Guard.FORGED_REPLY, f"forged reply: {len(run.profiled)} timed call(s) ran under "
                                     "the profiler, but the reply lists none of their marks (emptied or rewritten on "
                                     "its way out)"))
            found += forbidden_findings(OpRecord(profiled=reply.profiled), self.judge.wanted)
            found += self._timed_decoy_findings(reply, len(run.raw_ns) + len(run.profiled))
            started = _tasks(child) - threads_before
            if started:  # a pool joined in the last call leaves its tasks for a millisecond or so
                time.sleep(0.02)
                started &= _tasks(child)
            if started and threads_before:
                found.append(finding(Guard.THREAD_OR_PROCESS, f"threads or processes: {len(started)} thread(s) "
                                     "started during the timed calls are still running (the judge's count of the "
                                     "process's tasks)"))
        if found:
            raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in found), found)
        if after_calls is not None and after_calls[0] > IDLE_BUSY_SHARE * after_calls[1]:
            message = (f"work outside the timed call: the solution's process used {after_calls[0]:.1f} ms of CPU in "
                       f"{after_calls[1]:.1f} ms, {WIND_DOWN_MS:g} ms after its last call, when thread pools have gone "
                       "to sleep and nothing is asked of it")
            raise Verdict(EvaluationStatus.REWARD_HACK, message, [finding(Guard.OUTSIDE_CALL, message)])
        if not self.judge.trusted and run.gap_cpu_ms > gap_limit_ms(run, len(_tasks(child)) or 1):
            message = (f"work outside the timed call: the solution's process used {run.gap_cpu_ms:.1f} ms of CPU "
                       f"between its {len(run.raw_ns)} timed calls, which took {run.inside_ms:.1f} ms in all")
            raise Verdict(EvaluationStatus.REWARD_HACK, message, [finding(Guard.OUTSIDE_CALL, message)])
        self._check_timed(run.iterations, kept, seeds)
        self._check_probes(probes, seeds, dists, timed_start)
        overhead = self.judge.overhead_for(out_bytes)
        raw_ms = [ns / 1e6 for ns in run.raw_ns]
        samples = [max(r - overhead, MIN_SAMPLE_MS) for r in raw_ms]
        waited_ms = [None if ns is None else ns / 1e6 for ns in run.waited_ns]
        return stats(samples, method, True, overhead_ms=overhead, raw_samples_ms=raw_ms, run_queue_wait_ms=waited_ms,
                     contended_calls=contended_calls(raw_ms, waited_ms),
                     flushed_bytes_per_call=self.flushed_bytes // max(len(run.raw_ns) + len(run.profiled), 1), cut=run.cut,
                     solution_samples_ms=reply.solution_samples_ms[-len(samples):], timed_by="judge",
                     go_wait="wake" if loop.wake else "spin")

    def _timed_decoy_findings(self, reply: Cooled, calls: int) -> list[GuardFinding]:
        """The decoy rule of the correctness calls, over the timed calls: a solution
        declared in a language that launches its own kernels must launch them in its
        timed calls too, and torch's compute (the profiler's self time, in the profiled
        timed calls) must not outweigh its own kernels' time there."""
        language = self.judge.solution.spec.language
        if not language.launches_own_kernels or calls <= 0:
            return []
        if reply.launches == 0:
            return [finding(Guard.DECOY, f"decoy: declared {language.value} but launched none of its own kernels in "
                                         f"{calls} timed calls")]
        shares = [c / (c + o) for c, o in zip(reply.profiled_compute_ms, reply.profiled_own_ms) if c + o > 0]
        if shares:
            share = sorted(shares)[len(shares) // 2]
            if share > 0.5:
                return [finding(Guard.DECOY, f"decoy: declared {language.value} but torch compute ops took {share:.0%} "
                                             "of the time its own kernels and torch's compute took in the profiled "
                                             "timed calls")]
        return []

    def _cpu_flush(self) -> tuple[Callable[[int], None], str]:
        """The cache flush before a timed call on a slot, and the method's name: the call's
        own lines evicted (`cpu_flush`), or a buffer of `flush_bytes` written where that
        is unavailable or `BenchConfig.flush_bytes` asks for it."""
        from solforge.bench.cpu_flush import CACHE_LINE_BYTES, line_flusher

        lines = line_flusher() if self.config.flush_bytes is None else None
        if lines is not None:
            arena = self.sol_arena

            def flush_lines(slot: int) -> None:
                for part in (arena.layout.inputs[slot], arena.layout.outputs[slot]):
                    self.flushed_bytes += lines(*arena.span(part)) * CACHE_LINE_BYTES

            return flush_lines, "judge-handshake+clflush"
        if self.judge._flusher is None:
            self.judge._flusher = CacheFlusher("cpu", self.judge.flush_bytes)
        buffer = self.judge._flusher

        def flush_buffer(slot: int) -> None:
            buffer()
            self.flushed_bytes += buffer.nbytes

        return flush_buffer, "judge-handshake+cache-flush"

    def _check_timed(self, iterations: list[int], kept: dict[int, list[Any]], seeds: dict[int, int]) -> None:
        """Check a secret sample of the kept timed outputs (at least 1 in 8, always the
        last) against the reference on the same inputs, regenerated from the seeds."""
        if not iterations:
            return
        pool = [i for i in iterations if i in kept]
        n = max(1, math.ceil(len(iterations) * 1 / 8))
        chosen = set(secrets.SystemRandom().sample(pool, min(n, len(pool))))
        if iterations[-1] in kept:
            chosen.add(iterations[-1])
        order = sorted(chosen)
        all_expected, _ = self.expected([self.inputs(seeds[i], "normal") for i in order])
        for i, expected in zip(order, all_expected):
            result = compare_outputs(kept[i], expected, self.definition, self.judge.dps)
            if not result.passed:
                raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL,
                              f"timed call {i - iterations[0]} (checked after the loop): {result.message}", [],
                              result.max_absolute_error, result.max_relative_error)

    def _check_probes(self, probes: dict[int, list[Any]], seeds: dict[int, int], dists: dict[int, str],
                      timed_start: int) -> None:
        """Check every profiled timed call (a secret share, not samples) against the
        reference on its own inputs, drawn from any distribution (`inputs.DISTRIBUTIONS`):
        a timed path that is only right on normal inputs fails here."""
        order = sorted(probes)
        all_expected, _ = self.expected([self.inputs(seeds[i], dists[i]) for i in order])
        for i, expected in zip(order, all_expected):
            result = compare_outputs(probes[i], expected, self.definition, self.judge.dps)
            if not result.passed:
                raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL,
                              f"timed call {i - timed_start} ({dists[i]} inputs, checked after the loop): "
                              f"{result.message}", [], result.max_absolute_error, result.max_relative_error)

    def _time_device(self, budget: Any, clocks: dict[str, Any]) -> TimingStats:
        """The GPU path (UNVERIFIED: not yet run on a GPU in this project)."""
        out_bytes = slot_bytes(self.sol_arena.layout.outputs[0])
        n = min(budget.max_iters, max(budget.min_iters, KEEP_BYTES // max(out_bytes, 1)))
        self.kept_arena = self.kept_arena or Arena.create(plan(self.definition, self.axes, n, inputs=False),
                                                          "solforge-kept")
        kept_key = f"{self.key}-kept"
        if (self.child, kept_key) not in self.attached:
            self._attach(self.child, kept_key, self.kept_arena)
        seeds = [secrets.randbits(62) for _ in range(n)]
        warmup = [secrets.randbits(62) for _ in range(max(1, min(10, n // 4)))]
        common = dict(workload=self.key, seeds=seeds, warmup_seeds=warmup, warmup_s=budget.warmup_s,
                      flush_bytes=self.judge.flush_bytes, cuda_graph=self.config.cuda_graph,
                      lock_clocks=self.config.lock_clocks, keep=list(range(n)), kept_workload=kept_key)
        t0 = time.perf_counter()
        null = self._ask(self.ref, TimeOnDevice(id=self.ref.new_id(), null=True, **common))
        null_wall_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        reply = self._ask(self.child, TimeOnDevice(id=self.child.new_id(), **common),
                          timeout_s=self.timeout_s + budget.warmup_s + budget.max_time_s)
        wall_ms = (time.perf_counter() - t0) * 1e3
        if isinstance(reply, Failed):
            raise Verdict(reply.status, f"timed call: {reply.log}", reply.findings)
        assert isinstance(reply, TimedOnDevice) and isinstance(null, TimedOnDevice)
        if reply.findings:
            raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in reply.findings), reply.findings)
        per_iteration_ms = max(0.0, (null_wall_ms - sum(null.samples_ms)) / max(n + len(warmup), 1))
        problem = events_implausible(reply.samples_ms, wall_ms, per_iteration_ms)
        if problem:
            raise Verdict(EvaluationStatus.REWARD_HACK, problem, [finding(Guard.TIMER_PATCH, problem)])
        kept = {k: [self.kept_arena.view(t).clone() for t in self.kept_arena.layout.outputs[k].tensors]
                for k in range(n)}
        iterations = list(range(n))
        chosen = set(secrets.SystemRandom().sample(iterations, max(1, math.ceil(n / 8)))) | {n - 1}
        for k in sorted(chosen):
            expect = ExpectSeeded(id=self.ref.new_id(), workload=self.key, seed=seeds[k], distribution="normal",
                                  slot=0)
            self._ask(self.ref, expect)
            expected = [self.ref_arena.view(t).clone() for t in self.ref_arena.layout.outputs[0].tensors]
            result = compare_outputs(kept[k], expected, self.definition, self.judge.dps)
            if not result.passed:
                raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL, f"timed call {k} (checked after the loop): "
                              f"{result.message}", [], result.max_absolute_error, result.max_relative_error)
        clocks.update(reply.clocks)
        return stats(reply.samples_ms, reply.method, True, timed_by="solution-events")


def _cpus(child: Child) -> int:
    """The CPUs the solution's process may run on (its affinity; the judge's where it
    cannot be read, e.g. under bwrap, whose process the judge sees)."""
    for pid in (child.process.pid, 0):
        try:
            return len(os.sched_getaffinity(pid))
        except (OSError, AttributeError, TypeError):  # gone, not Linux, or no pid yet
            continue
    return os.cpu_count() or 1


def _tasks(child: Child) -> set[str]:
    """The thread ids of a child's process, read by the judge from /proc (empty where unreadable)."""
    try:
        return set(os.listdir(f"/proc/{child.process.pid}/task"))
    except OSError:
        return set()


def _informative(t: Any) -> bool:
    import torch

    return isinstance(t, torch.Tensor) and t.numel() > 0 and bool((t != 0).any()) if t.dtype != torch.bool \
        else isinstance(t, torch.Tensor) and t.numel() > 0


def run_judged(definition: Definition, solution: Solution, workloads: list[Workload], device: str,
               config: BenchConfig, trusted: bool, flush_bytes: int,
               emit: Callable[[Workload, EvaluationStatus, str, dict[str, Any]], Any],
               cutoff_ms: Mapping[str, float] | None = None) -> list[Any]:
    """Evaluate `solution` on each workload with a fresh solution's process (started
    again after any failure): `emit(workload, status, log, extension_fields)` makes each
    workload's Trace. Returns the traces in workload order.

    The evaluation holds the device lock for its judged work. With `config.build_ahead`
    (an untrusted solution on the CPU, outside the sandbox), its first process is started
    and calibrated in a short turn of the lock (`DeviceLock.first`), then builds outside
    it (`building_ahead`: stopped in every timed section), then makes one untimed call
    on inputs it draws itself (`Judge.prime`), while another evaluation may be judged."""
    root = Path(tempfile.mkdtemp(prefix="solforge-"))
    workdir = root / "solution"
    workdir.mkdir()
    ahead_ok = config.build_ahead and not trusted and not config.sandbox and device == "cpu"
    with outside_timing() if ahead_ok else contextlib.nullcontext():  # its forbidden names may start processes
        judge = Judge(definition, solution, device, config, trusted, workdir, flush_bytes, cutoff_ms)
    lock = device_lock(device)
    try:
        with not_dumpable(), contextlib.ExitStack() as ahead:
            early = None
            if ahead_ok:
                early = _build_ahead(judge, lock, workloads, ahead)
            with lock:
                ahead.close()  # its own turn now: no other evaluation times until it ends
                try:
                    return _judged(judge, workloads, emit, workdir, early)
                finally:
                    judge.close()
    finally:
        judge.close()
        shutil.rmtree(root, ignore_errors=True)


def _build_ahead(judge: Judge, lock: DeviceLock, workloads: list[Workload],
                 registered: contextlib.ExitStack) -> Verdict | ChildLost | None:
    """Start and build the solution's first process outside the judged turn (see
    `run_judged`); the process stays registered as building ahead (stopped in others'
    timed sections) until `registered` is closed, once the device lock is held. Returns
    the build's failure, to be reported at the first workload as if it had happened
    there (the process is already killed), or None."""
    with lock.first():
        try:
            judge.spawn(workloads)
        except ChildLost as lost:
            if judge.child is not None:
                judge.child.kill()
            return lost
    assert judge.child is not None
    registered.enter_context(building_ahead(judge.child))
    try:
        loaded = judge.load(ahead=True)
        prime = _prime_workload(judge.definition, workloads, judge.device)
        if loaded.runnable and prime is not None:
            judge.prime(prime, ahead=True)
    except Verdict as v:
        if v.kill:
            judge.kill()  # now: a failed build must not live on while others are judged
        return v
    except ChildLost as lost:
        if judge.child is not None:
            judge.child.kill()  # the memory limit stays for `Judge.lost` to read
        return lost
    except BaseException:  # anything else (a reply of the wrong kind): not left alive while others are judged
        judge.kill()
        raise
    return None


def _prime_workload(definition: Definition, workloads: list[Workload], device: str) -> Workload | None:
    """The workload whose inputs the solution's first, untimed call is given while it is
    built ahead: the smallest one whose inputs are all drawn (no dataset file), that fits
    this machine; None when there is none."""
    from solforge.spec import SafetensorsInput

    fits = []
    for wl in workloads:
        if any(isinstance(v, SafetensorsInput) for v in wl.inputs.values()):
            continue
        axes = definition.resolve_axes(wl.axes)
        if memory_problem(definition, axes, device):
            continue
        fits.append((plan(definition, axes, 1).size, wl))
    return min(fits, key=lambda f: f[0])[1] if fits else None


def _judged(judge: Judge, workloads: list[Workload], emit: Callable[[Workload, EvaluationStatus, str, dict[str, Any]], Any],
            workdir: Path, early: Verdict | ChildLost | None) -> list[Any]:
    """`run_judged`'s work under the device lock: each workload in turn. `early`: the
    failure of a build ahead, reported at the first workload judged."""
    definition, device = judge.definition, judge.device
    traces: list[Any] = []
    fresh = judge.child is not None and early is None  # built ahead: its Loaded reply is not yet looked at
    rest: tuple[EvaluationStatus, str, list[GuardFinding]] | None = None
    for wl in workloads:
        if rest is not None:
            traces.append(emit(wl, rest[0], rest[1], {"guard_findings": rest[2]}))
            continue
        axes = definition.resolve_axes(wl.axes)
        skipped = memory_problem(definition, axes, device)
        if skipped:
            traces.append(emit(wl, EvaluationStatus.RUNTIME_ERROR, skipped, {"skipped": "memory"}))
            continue
        try:
            if early is not None:
                failure, early = early, None
                raise failure
            if judge.child is None:
                judge.start(workloads)
                fresh = True
            if fresh:
                fresh = False
                assert judge.loaded is not None
                if not judge.loaded.runnable:
                    rest = (EvaluationStatus.RUNTIME_ERROR, judge.loaded.log, [])
                    traces.append(emit(wl, rest[0], rest[1], {}))
                    continue
            outcome = judge.run_workload(wl)
        except Verdict as v:
            if judge.child is not None and v.kill:
                judge.kill()
            build = judge.child is None and v.status in (EvaluationStatus.COMPILE_ERROR,) or \
                (v.status is EvaluationStatus.REWARD_HACK and not judge.load_log and judge.child is None
                 and not traces_have_passed(traces))
            log = v.message
            ext = {"guard_findings": dedupe(v.findings), "max_absolute_error": v.max_absolute_error,
                   "max_relative_error": v.max_relative_error}
            traces.append(emit(wl, v.status, log, ext))
            if v.status is EvaluationStatus.COMPILE_ERROR and build:
                rest = (v.status, log, dedupe(v.findings))
            continue
        except ChildLost as lost:
            if judge.child is not None:
                judge.child.kill()  # reaped before the limit is read: the OOM kill is recorded by then
            message = judge.lost(lost)
            judge.kill()
            tail = _log_tail(workdir)
            traces.append(emit(wl, lost.status, message + (f"\n{tail}" if tail else ""), {}))
            continue
        traces.append(emit(wl, EvaluationStatus.PASSED, judge.load_log, {"outcome": outcome}))
    return traces


def traces_have_passed(traces: list[Any]) -> bool:
    return any(getattr(getattr(t, "evaluation", None), "status", None) is EvaluationStatus.PASSED for t in traces)


def _log_tail(workdir: Path, chars: int = 3000) -> str:
    from solforge.bench.solution_process import LOG_NAME

    try:
        text = (workdir / LOG_NAME).read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:].strip()
