"""Timing: the one method every caller uses, baselines and solutions alike.

On the CPU the judge times each call itself (`time_cpu`), from its side of a handshake
with the solution's process; nothing the solution's process reports enters the figure:

1. Before the solution is loaded, the bare handshake is timed (`calibrate_handshake`):
   GO/DONE frames over the socket, and for a solution that returns its outputs (not
   destination-passing) the copy of that many bytes into a shared buffer. Its low
   quantile (`overhead_ms`) is subtracted from every sample; the raw samples are kept too.
2. Warm-up by time (`warmup_s`, at least one call), samples discarded.
3. Timed iterations until `max_iters` samples or `max_time_s` (never fewer than
   `min_iters`). Each iteration, outside the timed region: fresh inputs from a secret
   seed written into the next buffer of a ring (so consecutive calls see different
   addresses), the output buffer poisoned, then the caches flushed: the lines of that
   call's inputs and outputs evicted from every cache (`cpu_flush`, x86-64), or where
   that is not available, a buffer of twice the last-level cache written
   (`flush_bytes_for`; also when `BenchConfig.flush_bytes` is set). Then the handshake
   (`handshake`): the clock runs from the judge's GO to the kernel's receive time of the
   solution's DONE. The solution's process waits for GO spinning, or asleep when the
   threads it ran in the warm-up and the judge are more than its CPUs (`wake_for`);
   asleep, the wake-up's latency stays in each sample (only the spun-on handshake is
   subtracted: a solution watching the GO word with a thread of its own would not spend
   it). The judge's own torch work in the loop runs on one thread
   (`judge_threads`): more threads' OpenMP workers spin on after each op and take a CPU
   from the call. Around each call the judge reads how long the solution's threads
   waited, runnable, for a CPU (`processes.run_queue_wait_ns`); calls that waited over
   a quarter of their time and a tick are counted (`contended_calls`) and reported.
4. The judge copies each iteration's outputs at DONE and keeps them (a secret sample of
   them when they do not fit in `keep_bytes`); after the loop it checks a secret random
   subset, at least 1 in 8 and always the last, against the reference on the same
   inputs (regenerated from the seeds), and it checks that no output buffer changed after
   its DONE. It also reads the CPU time the solution's process used between calls
   (its process CPU clock): work done between DONE and the next GO is work outside the
   timed call.
5. The spread decides whether the figure is sound: fewer than `MIN_STABLE_SAMPLES`
   samples, or IQR / median above `MAX_STABLE_IQR_RATIO`, and the timing runs again once;
   still so, it is marked unstable (`TimingStats.unstable`) with a warning.

On a GPU the events stay in the solution's process (`time_on_device`): warm-up by
time; per iteration fresh inputs from the judge's seeds at fresh addresses, made
outside the timed region, an L2 flush, CUDA events around the call alone; each
iteration's outputs copied to the judge's kept-outputs buffer. The judge measures the
wall-clock time of the whole request and refuses the timing when the events' sum is
implausibly below what the wall clock leaves for the calls (`events_implausible`), and
checks kept outputs after the loop as on the CPU. SM clock and throttle reasons are
read through NVML before and after; clock locking is an option, never the default.
CUDA-graph mode (launch-bound kernels) captures the call once and times replays.
UNVERIFIED: the GPU loop has not run on a GPU in this project yet.

Reported: median, interquartile range, min and count, in milliseconds, with every
sample kept (`TimingStats`).
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from solforge.bench.handshake import judge_round, stop
from solforge.spec import TimingStats

if TYPE_CHECKING:
    import torch

FALLBACK_CACHE_BYTES = 64 * 2**20  # when the cache size is unknown; the flush writes twice this
MIN_STABLE_SAMPLES = 5
CUT_MIN_SAMPLES = 3  # the cut-off decides on the median of at least this many samples (or min_iters, if fewer)
MAX_STABLE_IQR_RATIO = 0.25
CHECKED_FRACTION = 1 / 8  # at least this share of timed iterations is checked after the loop
# Work the solution's process may do between calls without it counting as work outside
# the call: returning from the call, reading the next frame, thread pools winding down
# (OpenMP and numba workers spin after a parallel region: about 3 ms of CPU per call was
# seen on 2 cores). Inputs are not visible before the call is armed, so there is nothing
# to work on between calls; this catches blatant background work, not a subtle race.
GAP_ALLOWANCE_MS = 5.0
GAP_SHARE = 1.0  # ... plus this share of the time measured inside the calls
# ... plus what waiting costs while the judge works between calls (checks, prepares; W ms
# of wall time per gap, which grows with the workload's bytes): the main thread sleeps
# until READY (`handshake.serve_rounds`), but each other thread that ran in the warm-up (a
# thread pool's workers) may spin for up to WIND_DOWN_MS of W before it sleeps. GNU OpenMP's
# workers spin GOMP_SPINCOUNT (300,000) rounds of a PAUSE loop after a parallel region
# (libgomp manual, "GOMP_SPINCOUNT"); on the developer machine that was 4-8 ms of CPU
# per region (2026-12-04, docs/measurements.md); PAUSE takes up to ~140 cycles on other
# Intel cores, ~20 ms. Without this, an honest numba parallel=True kernel of 256 x 4096
# rows used 9 ms of CPU per gap against an allowance of 7.5 and was called a reward hack.
WIND_DOWN_MS = 25.0
# Where that allowance applies, once the loop is over the judge rests WIND_DOWN_MS, so that
# thread pools have gone to sleep, and reads the solution's process CPU over
# IDLE_WINDOW_MS: a process still busy then (its main thread waits for the next frame
# asleep) runs work of its own between calls, which the allowance must not cover.
# Another process's CPU clock advances only when the kernel accounts its running thread, at
# a scheduler tick or a switch (4 ms apart at HZ=250, 10 ms at HZ=100), so over a window W
# a process busy on one CPU reads at least W minus one tick: a 3 ms window read 0.0 ms for
# `while True: pass` (2026-12-04, the developer machine, HZ=250). 24 ms reads more than
# half the window for a busy process down to HZ=100 (at least 14 ms of 24).
IDLE_WINDOW_MS = 24.0
IDLE_BUSY_SHARE = 0.5  # busy: more than this share of the window on one CPU
# A timed call is contended when the solution's threads waited for a CPU longer than this
# share of the call and this many ms (`contended_calls`: one scheduler tick at HZ=1000; a
# thread queued behind another until a tick moves it was seen to wait one tick, 4 ms at
# HZ=250); a timing whose calls are contended more often than CONTENDED_WARN_SHARE gets
# a warning. The window read runs from just before GO to just after the judge wakes at
# DONE, a little wider than the clock's: a few tenths of a ms of wait at the edges is
# common and is not contention.
CONTENDED_SHARE = 0.25
CONTENDED_MIN_MS = 1.0
CONTENDED_WARN_SHARE = 0.25


def flush_bytes_for(configured: int | None, cache_bytes: int | None) -> int:
    """Bytes the cache flush writes: `configured` if given, else twice the cache
    (the L2 of a GPU, the largest cache level of a CPU), else twice FALLBACK_CACHE_BYTES."""
    if configured is not None:
        return configured
    return 2 * (cache_bytes or FALLBACK_CACHE_BYTES)


class CacheFlusher:
    """Overwrites a buffer of `nbytes` on `device` with a new byte value each time, so
    that nothing a call reads is left in the caches. `written_bytes` counts what it
    wrote (tests check the flush is real)."""

    def __init__(self, device: str, nbytes: int):
        import torch

        self.nbytes = nbytes
        self.written_bytes = 0
        self._count = 0
        self._buf = torch.empty(nbytes, dtype=torch.uint8, device=device) if nbytes > 0 else None

    def __call__(self) -> None:
        if self._buf is None:
            return
        self._count += 1
        self._buf.fill_(self._count & 0xFF)
        self.written_bytes += self.nbytes


def stats(samples_ms: list[float], method: str, is_measurement: bool, **extra: Any) -> TimingStats:
    """Median, IQR (linear interpolation between order statistics, numpy's default), min
    and count of `samples_ms`, every sample kept."""
    s = sorted(samples_ms)

    def q(p: float) -> float:
        pos = p * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return TimingStats(method=method, median_ms=q(0.5), iqr_ms=q(0.75) - q(0.25), min_ms=s[0], count=len(s),
                       samples_ms=list(samples_ms), is_performance_measurement=is_measurement, **extra)


def is_stable(t: TimingStats) -> bool:
    """Enough samples, and a spread small enough for the median to mean something."""
    if t.count < MIN_STABLE_SAMPLES:
        return False
    return t.median_ms <= 0 or t.iqr_ms / t.median_ms <= MAX_STABLE_IQR_RATIO


# -- the CPU: the judge times the handshake -----------------------------------------------------


def calibrate_handshake(child: Any, line: Any, request_id: int, copy_bytes: list[int], rounds: int,
                        timeout_s: float) -> list[float]:
    """The bare round trip (`handshake`, GO spun on; its 20th percentile), in milliseconds,
    for each size in `copy_bytes` (the hand-over copy of a returned output; 0 for none).
    Runs the `calibrate` request of the solution's process: call it before the solution
    is loaded."""
    from solforge.bench.messages import Calibrate

    child.send(Calibrate(id=request_id, copy_bytes=copy_bytes, rounds=rounds), fds=line.their_fds)
    medians = []
    iteration = 0
    for slot in range(len(copy_bytes)):
        samples = []
        for _ in range(rounds):
            samples.append(judge_round(line, iteration, slot, timeout_s) / 1e6)
            iteration += 1
        # A low quantile, not the median: the handshake's own cost is fixed, and a busy
        # machine only adds to it; subtracting its noisy median would erase fast calls.
        medians.append(sorted(samples)[len(samples) // 5])
    stop(line)
    child.receive(request_id, timeout_s)
    return medians


@dataclass
class CpuLoop:
    """What the judge's CPU loop needs from the judge (`judge.WorkloadRun` provides it)."""

    line: Any  # the handshake's HotLine
    # (iteration, slot, purpose) -> fresh inputs staged, outputs poisoned; purpose is "warmup", "time" or "probe"
    # (a call run under the profiler, not a sample: the judge may draw its inputs from any distribution)
    prepare: Callable[[int, int, str], None]
    publish: Callable[[int], None]  # (slot) -> the staged inputs written into the slot (the call is armed)
    keep: Callable[[int, int], None]  # (iteration, slot) -> copy the outputs of the call just done
    before_reuse: Callable[[int], None]  # (slot) -> check the outputs left there did not change since DONE
    flush: Callable[[int], None]  # (slot) -> evict the caches before the call on that slot
    ring: int
    timeout_s: float
    profile_every: int = 0  # about 1 in this many timed calls runs under torch's profiler (0: none), drawn secretly
    min_profiled: int = 1  # with profile_every, at least this many profiled calls per loop
    wake: bool = False  # the solution's process waits for GO asleep (`handshake`; `wake_for` decides)
    pool_threads: int = 0  # threads besides the main one that ran in the warm-up (a pool winding down after calls)


@dataclass
class CpuRun:
    """One timed loop on the CPU."""

    raw_ns: list[int] = field(default_factory=list)
    gap_cpu_ms: float = 0.0  # CPU time of the solution's process between DONE and the next GO
    gap_wait_ms: float = 0.0  # how much of it thread pools winding down may take (see WIND_DOWN_MS)
    inside_ms: float = 0.0  # sum of the raw round trips
    iterations: list[int] = field(default_factory=list)  # iteration numbers timed, in order
    cut: bool = False  # stopped early: the median was past the cut-off
    profiled: list[int] = field(default_factory=list)  # iterations run under the profiler (not samples)
    # per sample (same order as raw_ns): how long the solution's threads waited, runnable, for a CPU
    # from just before GO to just after the judge woke at DONE (ns; None where /proc cannot tell)
    waited_ns: list[int | None] = field(default_factory=list)


def time_cpu(child: Any, loop: CpuLoop, warmup_s: float, max_time_s: float, max_iters: int,
             min_iters: int, first_iteration: int = 0, cutoff_raw_ms: float | None = None) -> CpuRun:
    """The judge-side loop (steps 2 and 3 of the module docstring). Iteration numbers
    run on from `first_iteration`, so an iteration number never repeats. With
    `max_iters` 0 only the warm-up runs. With `cutoff_raw_ms`, the loop stops once it
    has `min(min_iters, CUT_MIN_SAMPLES)` samples whose median is past it (`run.cut`): a
    candidate clearly slower than the best needs no more samples to say so (tinygrad's
    BEAM search cuts the same way). Raises handshake.OutOfStep or CallRaised."""
    run = CpuRun()
    i = first_iteration
    if warmup_s > 0 or max_iters == 0:
        deadline = time.perf_counter() + warmup_s
        while i == first_iteration or time.perf_counter() < deadline:
            slot = i % loop.ring
            loop.before_reuse(slot)
            loop.prepare(i, slot, "warmup")
            judge_round(loop.line, i, slot, loop.timeout_s, on_armed=lambda: loop.publish(slot), wake=loop.wake)
            loop.keep(i, slot)
            i += 1
    start = time.perf_counter()
    last_done_cpu = child.cpu_ns()
    last_done_s = time.perf_counter()
    while len(run.raw_ns) < max_iters:
        n = len(run.raw_ns)
        owed = loop.min_profiled - len(run.profiled) if loop.profile_every > 0 else 0  # profiled calls still due
        if n >= min_iters and time.perf_counter() - start >= max_time_s and owed <= 0:
            break
        slot = i % loop.ring
        profile = loop.profile_every > 0 and (secrets.randbelow(loop.profile_every) == 0
                                              or (owed > 0 and n >= min_iters - owed))
        loop.before_reuse(slot)
        loop.prepare(i, slot, "probe" if profile else "time")
        ready_cpu = child.cpu_ns()
        gap_ms = (time.perf_counter() - last_done_s) * 1e3
        waited_before: list[int | None] = [None]

        def armed(slot: int = slot) -> None:
            loop.publish(slot)
            loop.flush(slot)
            waited_before[0] = child.run_queue_wait_ns()

        raw = judge_round(loop.line, i, slot, loop.timeout_s, on_armed=armed, profile=profile, wake=loop.wake)
        waited_after = child.run_queue_wait_ns()
        done_cpu = child.cpu_ns()
        last_done_s = time.perf_counter()
        if ready_cpu is not None and last_done_cpu is not None:
            run.gap_cpu_ms += (ready_cpu - last_done_cpu) / 1e6
            run.gap_wait_ms += loop.pool_threads * min(gap_ms, WIND_DOWN_MS)
        last_done_cpu = done_cpu
        loop.keep(i, slot)
        if profile:  # checked like any timed call, but its time is the profiler's too: not a sample
            run.profiled.append(i)
            i += 1
            continue
        run.raw_ns.append(raw)
        run.waited_ns.append(None if waited_before[0] is None or waited_after is None
                             else max(0, waited_after - waited_before[0]))  # a thread that ended takes its wait along
        run.iterations.append(i)
        run.inside_ms += raw / 1e6
        i += 1
        if cutoff_raw_ms is not None and len(run.raw_ns) >= min(min_iters, CUT_MIN_SAMPLES):
            if sorted(run.raw_ns)[len(run.raw_ns) // 2] / 1e6 > cutoff_raw_ms:
                run.cut = True
                break
    return run


@contextlib.contextmanager
def judge_threads(n: int | None = 1) -> Iterator[None]:
    """The judge's own torch work on `n` intra-op threads (torch.set_num_threads) while
    a CPU timing runs, restored after (None: left as it is). The judge's work between
    calls (fresh inputs, poisoning, publishing, copying outputs) is torch ops; on more
    threads, their OpenMP workers spin on after each op (GNU OpenMP's active wait) into
    the next timed call and take a CPU from it. Seen on the 2-core developer machine (2026-12-03,
    docs/measurements.md): a serial numba kernel's threads waited 0.3-0.9 ms for a CPU
    in every timed call, 4 ms in about a fifth of them, and none of either with the
    judge on one thread."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def busy_threads(before: dict[int, tuple[int, int, bool]] | None,
                 after: dict[int, tuple[int, int, bool]] | None) -> int | None:
    """How many threads ran between two readings of a process's threads
    (`processes.thread_activity`: thread id -> (ns run, times scheduled, running)):
    those whose run time or count of times scheduled grew, new ones that did either,
    and those running at the second reading. None when either reading is missing."""
    if before is None or after is None:
        return None
    return sum(1 for tid, (ns, scheduled, running) in after.items()
               if running or (ns, scheduled) != before.get(tid, (0, 0, False))[:2])


def wake_for(busy: int | None, cpus: int) -> bool:
    """Whether the solution's process should wait for GO asleep (`handshake`): when its
    threads that ran during the warm-up (`busy`), plus the judge publishing the inputs,
    are more than the `cpus` it may run on. Then a main thread spinning on GO makes
    the machine oversubscribed before every call, and one of the call's own threads may
    wait behind another for a scheduler tick at GO (seen on the 2-CPU developer
    machine, 2026-12-03: a numba `parallel=True` kernel of two threads timed at 1.9 ms
    in some evaluations and 3.3-5.2 ms in others, docs/measurements.md). Fewer threads
    spin: the call then starts within nanoseconds of GO. Unknown (`busy` None): spin."""
    return busy is not None and busy + 1 > cpus


def contended_waits_ms(raw_ms: list[float], waited_ms: list[float | None]) -> list[float]:
    """The waits of the contended timed calls: those whose solution's threads waited,
    runnable, for a CPU longer than CONTENDED_SHARE of the call's raw time and
    CONTENDED_MIN_MS (`raw_ms` and `waited_ms` per call, in ms, same order). Such a
    sample times the scheduler as well as the call: a thread of the solution's queued
    behind another task (a judge's own work between calls, another process, or the
    solution's own threads when it runs more than the machine's cores) until a tick moves
    it (4 ms at HZ=250). Calls with no reading do not count."""
    return [waited for raw, waited in zip(raw_ms, waited_ms)
            if waited is not None and waited > max(CONTENDED_SHARE * raw, CONTENDED_MIN_MS)]


def contended_calls(raw_ms: list[float], waited_ms: list[float | None]) -> int:
    """How many timed calls were contended (`contended_waits_ms`)."""
    return len(contended_waits_ms(raw_ms, waited_ms))


def gap_limit_ms(run: CpuRun, threads: int = 1) -> float:
    """The CPU time a solution's process of `threads` threads may use between its calls
    (see GAP_ALLOWANCE_MS: per call, for every two threads that may be winding down;
    and what waiting cost while the judge worked, `CpuRun.gap_wait_ms`)."""
    return (GAP_ALLOWANCE_MS * max(1.0, threads / 2) * len(run.raw_ns) + GAP_SHARE * run.inside_ms
            + run.gap_wait_ms)


def busy_after_calls_ms(child: Any) -> tuple[float, float] | None:
    """(CPU ms the solution's process used, window ms) over IDLE_WINDOW_MS, after resting
    WIND_DOWN_MS once its last call signalled DONE (see IDLE_WINDOW_MS). None where the
    process's CPU clock cannot be read."""
    time.sleep(WIND_DOWN_MS / 1e3)
    cpu0, t0 = child.cpu_ns(), time.perf_counter()
    time.sleep(IDLE_WINDOW_MS / 1e3)
    cpu1, t1 = child.cpu_ns(), time.perf_counter()
    if cpu0 is None or cpu1 is None:
        return None
    window_ms = (t1 - t0) * 1e3
    return (cpu1 - cpu0) / 1e6, window_ms


# -- the GPU: events in the solution's process ---------------------------------------------------


@dataclass
class DeviceRun:
    samples_ms: list[float]
    method: str
    clocks: dict[str, float | int | str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class CudaTimer:
    """A pair of CUDA events around the call, read once the loop is over. `start` enqueues
    the L2 flush right before the start event."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self.pairs: list[tuple[Any, Any]] = []
        self._flush = flush

    def start(self) -> None:
        import torch

        self.pairs.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
        self._flush()
        self.pairs[-1][0].record()

    def stop(self) -> None:
        self.pairs[-1][1].record()

    def results_ms(self) -> list[float]:
        import torch

        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in self.pairs]


def events_implausible(samples_ms: list[float], wall_ms: float, overhead_ms_per_iteration: float) -> str | None:
    """Why a GPU timing's events cannot be believed, or None. The wall clock of the whole
    loop, less the per-iteration work outside the calls (input generation, flush, the
    output copy, measured as `overhead_ms_per_iteration`), bounds what the calls took;
    events summing to under half of that bound are refused ("timer disagrees with wall
    clock")."""
    n = len(samples_ms)
    if n == 0:
        return None
    left_ms = wall_ms - n * overhead_ms_per_iteration
    events_ms = sum(samples_ms)
    if left_ms > 5.0 and events_ms < 0.5 * left_ms:
        return (f"timer disagrees with wall clock: the events sum to {events_ms:.3f} ms over {n} calls, the wall clock "
                f"leaves {left_ms:.3f} ms for them")
    return None


def _read_clocks(run: DeviceRun, device_index: int, uuid: str | None, when: str) -> Any:
    from solforge.hardware.nvml import read_clocks

    reading = read_clocks(device_index, uuid=uuid)
    if reading is not None:
        run.clocks.update({f"{key}_{when}": value for key, value in reading.as_dict().items()})
    return reading


def _default_sm_clock_mhz(uuid: str | None, device_index: int) -> int:
    """The board's default applications SM clock (what `nvidia-smi -q -d CLOCK` lists as
    Default Applications Clocks): sustainable under load, unlike the max boost clock."""
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = (pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}") if uuid
                  else pynvml.nvmlDeviceGetHandleByIndex(device_index))
        return int(pynvml.nvmlDeviceGetDefaultApplicationsClock(handle, pynvml.NVML_CLOCK_SM))
    finally:
        pynvml.nvmlShutdown()


@contextlib.contextmanager
def _locked_sm_clock(device_index: int, uuid: str | None, run: DeviceRun) -> Iterator[None]:
    """Lock the SM clock at the default applications clock for the block (NVML, root only)."""
    from solforge.hardware.nvml import locked_clocks

    try:
        mhz = _default_sm_clock_mhz(uuid, device_index)
        lock = locked_clocks(device_index, mhz)
        lock.__enter__()
    except Exception as exc:  # ClockLockError, no pynvml, an unsupported board: time unlocked
        run.warnings.append(f"lock_clocks: could not lock the SM clock ({exc}); timed unlocked")
        yield
        return
    run.clocks["locked_sm_clock_mhz"] = mhz
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def time_on_device(session: Any, state: Any, request: Any) -> DeviceRun:
    """The GPU loop in the solution's process (see the module docstring): `session` is
    its Session, `state` the workload's arena and workload, `request` the TimeOnDevice
    message. Outputs of iteration k go to output slot `request.keep[k]` of the arena
    attached as `request.kept_workload` (none when -1)."""
    import torch

    kept_arena = session.workloads[request.kept_workload].arena
    names = list(session.definition.outputs)

    def kept(k: int, ret: Any, outs: dict[str, Any] | None) -> None:
        slot = request.keep[k]
        if slot < 0:
            return
        shared = kept_arena.read(kept_arena.layout.outputs[slot])
        values = [outs[n] for n in names] if outs else (list(ret) if type(ret) in (tuple, list) else [ret])
        for name, value in zip(names, values):
            torch.Tensor.copy_(shared[name], value)

    return device_loop(session.definition, state.workload, session.device, state.dataset_root, session.fn,
                       session.solution.spec.destination_passing_style, request, kept)


def null_loop_on_device(definition: Any, workload: Any, device: str, dataset_root: Any, request: Any,
                        arena: Any) -> DeviceRun:
    """The same loop with no solution: fresh inputs, the flush, empty outputs copied to
    the host. Run by the reference process, whose wall clock gives the judge the loop's
    own cost per iteration (`events_implausible`)."""
    import torch

    axes = definition.resolve_axes(workload.axes)
    names = list(definition.outputs)

    def null(**kwargs: Any) -> Any:
        empty = [torch.empty(definition.shape_of(s, axes), dtype=s.dtype.to_torch(), device=device)
                 for s in definition.outputs.values()]
        return empty[0] if len(empty) == 1 else tuple(empty)

    def kept(k: int, ret: Any, outs: Any) -> None:
        shared = arena.read(arena.layout.outputs[0])
        for name, value in zip(names, list(ret) if type(ret) is tuple else [ret]):
            torch.Tensor.copy_(shared[name], value)

    return device_loop(definition, workload, device, dataset_root, null, False, request, kept)


def device_loop(definition: Any, workload: Any, device: str, dataset_root: Any, fn: Callable[..., Any], dps: bool,
                request: Any, kept: Callable[[int, Any, Any], None]) -> DeviceRun:
    """Warm-up on `request.warmup_seeds`, then one timed call per seed of `request.seeds`
    (fresh inputs at fresh addresses, L2 flush, CUDA events around the call alone), each
    iteration's outputs handed to `kept(k, returned, destination buffers)`."""
    import torch

    from solforge.bench.correctness import poison_
    from solforge.bench.inputs import make_inputs

    axes = definition.resolve_axes(workload.axes)
    flusher = CacheFlusher(device, request.flush_bytes)

    def fresh(seed: int) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        inputs = make_inputs(definition, workload, axes, seed, "normal", device, dataset_root)
        outs = None
        if dps:
            outs = {n: poison_(torch.empty(definition.shape_of(s, axes), dtype=s.dtype.to_torch(), device=device))
                    for n, s in definition.outputs.items()}
        return inputs, outs

    run = DeviceRun(samples_ms=[], method="cuda-events+l2-flush")
    for seed in request.warmup_seeds:
        inputs, outs = fresh(seed)
        fn(**inputs, **(outs or {}))
        torch.cuda.synchronize()
    device_index = torch.device(device).index or 0
    uuid = str(getattr(torch.cuda.get_device_properties(device_index), "uuid", "") or "") or None
    lock = _locked_sm_clock(device_index, uuid, run) if request.lock_clocks else contextlib.nullcontext()
    timer = CudaTimer(flusher)
    ring: deque = deque(maxlen=2)  # the last iterations' tensors stay alive: fresh addresses each time
    graph = _capture(fn, fresh, request, run) if request.cuda_graph else None
    with lock:
        before = _read_clocks(run, device_index, uuid, "before")
        for k, seed in enumerate(request.seeds):
            if graph is not None:
                g, static_in, static_out, static_ret = graph
                values, _ = fresh(seed)
                for name, value in values.items():
                    if isinstance(value, torch.Tensor):
                        static_in[name].copy_(value)
                timer.start()
                g.replay()
                timer.stop()
                torch.cuda.synchronize()
                kept(k, static_ret, static_out)
                continue
            inputs, outs = fresh(seed)
            timer.start()
            ret = fn(**inputs, **(outs or {}))
            timer.stop()
            torch.cuda.synchronize()
            kept(k, ret, outs)
            ring.append((inputs, outs, ret))
        after = _read_clocks(run, device_index, uuid, "after")
    if before is not None and after is not None:
        from solforge.hardware.nvml import throttled

        reason = throttled(before, after)
        if reason:
            run.warnings.append(f"the GPU throttled while timing: {reason}")
    run.samples_ms = timer.results_ms()
    return run


def _capture(fn: Callable[..., Any], fresh: Callable[[int], Any], request: Any, run: DeviceRun) -> Any:
    """(graph, static inputs, static outputs, static return) of the call captured once on
    fixed buffers; None, with a warning, when the call cannot be captured (a host sync,
    a CPU fallback): the loop then times with plain events."""
    import torch

    static_in, static_out = fresh(request.seeds[0] if request.seeds else 0)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            static_ret = fn(**static_in, **(static_out or {}))
    except Exception as exc:
        run.warnings.append(f"cuda_graph: capture failed ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                            "timed with CUDA events")
        torch.cuda.synchronize()
        return None
    run.method = "cuda-graph+l2-flush"
    return graph, static_in, static_out, static_ret
