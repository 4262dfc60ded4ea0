"""Timing: the one method every caller uses, baselines and solutions alike. Runs in the worker.

Per workload (`measure`):

1. Warm-up by time: the call runs on fresh inputs until `warmup_s` has passed (at
   least once), so that JIT compilation, autotuning and lazy allocation are done.
2. Timed iterations, until `max_iters` samples or `max_time_s` of wall-clock time
   (whichever first, never fewer than `min_iters`). Each iteration, outside the timed
   region: inputs with fresh values at a fresh address (regenerated; the previous two
   iterations' tensors stay alive so that the allocator cannot hand their addresses
   back), poisoned destination buffers for destination-passing solutions, then a cache
   flush that writes a buffer at least twice the size of the cache (the L2 of a GPU,
   the last-level cache of a CPU, as `hardware.detect(...).l2_bytes` gives them;
   fallback 2 x 64 MiB). Then the call alone is timed: CUDA events on the GPU, `perf_counter`
   on the CPU. Each iteration ends with a device synchronize, so that every call starts
   on an idle device whether or not the guards watch it (they do not watch baselines).
3. A sample of the timed iterations (one drawn at random among the first `min_iters`,
   plus the last) is checked against the reference, outside the timed region.

Reported: median, interquartile range, min and count, in milliseconds, with every
sample kept (`TimingStats`). On the GPU the SM clock and throttle reasons are read
through NVML just before and after the timed loop; a throttle adds a warning. Clock
locking (`lock_clocks`) locks the SM clock at the default applications clock for the
timed loop; it needs root and is never on by default.

CUDA-graph mode (for launch-bound kernels): the call is captured once into a graph on
fixed input and output buffers; each iteration copies fresh values into those buffers
(outside the timed region), flushes the L2, and times one replay with CUDA events. The
addresses stay fixed in this mode: only the values are fresh.

A Triton solution on the CPU runs under the Triton interpreter; its time is recorded
with `is_performance_measurement=False`.
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

from solforge.bench.config import TimingBudget
from solforge.bench.correctness import (
    EvaluationStatus,
    Verdict,
    WorkloadContext,
    allocate_outputs,
    compare_outputs,
    reference_expected,
)
from solforge.spec import TimingStats

if TYPE_CHECKING:
    import torch

# Captured at import, before any solution is imported: a solution that replaces
# time.perf_counter does not change the clock the harness reads.
_perf_counter = time.perf_counter

FALLBACK_CACHE_BYTES = 64 * 2**20  # when the cache size is unknown; the flush writes twice this


@dataclass
class TimingRun:
    """What `measure` returns: the statistics, the clock readings and any warnings."""

    stats: TimingStats
    clocks: dict[str, float | int | str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def flush_bytes_for(configured: int | None, cache_bytes: int | None) -> int:
    """Bytes the cache flush writes: `configured` if given, else twice the cache
    (`hardware.detect(device).l2_bytes`: the L2 of a GPU, the largest cache level of a
    CPU), else twice FALLBACK_CACHE_BYTES."""
    if configured is not None:
        return configured
    return 2 * (cache_bytes or FALLBACK_CACHE_BYTES)


_FLUSH: dict[tuple[str, int], Any] = {}


def _flusher(device: str, nbytes: int) -> Callable[[int], None]:
    """A function that overwrites an `nbytes` buffer on `device` (allocated once per worker)."""
    import torch

    if nbytes <= 0:
        return lambda i: None
    key = (device, nbytes)
    if key not in _FLUSH:
        _FLUSH[key] = torch.empty(nbytes, dtype=torch.uint8, device=device)
    buf = _FLUSH[key]
    return lambda i: buf.fill_(i & 0xFF)


def _stats(samples_ms: list[float], method: str, is_measurement: bool) -> TimingStats:
    s = sorted(samples_ms)

    def q(p: float) -> float:  # linear interpolation between order statistics (numpy's default)
        pos = p * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return TimingStats(
        method=method,
        median_ms=q(0.5),
        iqr_ms=q(0.75) - q(0.25),
        min_ms=s[0],
        count=len(s),
        samples_ms=list(samples_ms),
        is_performance_measurement=is_measurement,
    )


class CpuTimer:
    """perf_counter around the call; samples in milliseconds. `start` flushes the cache
    first, inside the guard's watch, so that nothing runs between the flush and the call."""

    def __init__(self, flush: Callable[[int], None]) -> None:
        self.samples_ms: list[float] = []
        self._t0 = 0.0
        self._flush = flush

    def start(self) -> None:
        self._flush(len(self.samples_ms))
        self._t0 = _perf_counter()

    def stop(self) -> None:
        self.samples_ms.append((_perf_counter() - self._t0) * 1e3)

    def results_ms(self) -> list[float]:
        return self.samples_ms


class CudaTimer:
    """A pair of CUDA events around the call, read once the loop is over. `start` enqueues
    the L2 flush right before the start event: while the GPU runs the flush, the host
    records the event and launches the call, so the launch does not show as idle time
    (for a call whose host overhead exceeds the flush, it does: use CUDA-graph mode)."""

    def __init__(self, flush: Callable[[int], None]) -> None:
        self.pairs: list[tuple[Any, Any]] = []
        self._flush = flush

    def start(self) -> None:
        import torch

        self.pairs.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
        self._flush(len(self.pairs))
        self.pairs[-1][0].record()

    def stop(self) -> None:
        self.pairs[-1][1].record()

    def results_ms(self) -> list[float]:
        import torch

        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in self.pairs]


def _check_sample(ctx: WorkloadContext, inputs: dict[str, Any], outputs: list[torch.Tensor], i: int) -> None:
    expected = reference_expected(ctx, inputs)
    result = compare_outputs(outputs, expected, ctx)
    if not result.passed:
        raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL, f"timed iteration {i}: {result.message}", [],
                      result.max_absolute_error, result.max_relative_error)


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
def _locked_sm_clock(device_index: int, uuid: str | None, run: TimingRun) -> Iterator[None]:
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


def _read_clocks(run: TimingRun, device_index: int, uuid: str | None, when: str) -> Any:
    from solforge.hardware.nvml import read_clocks

    reading = read_clocks(device_index, uuid=uuid)
    if reading is not None:
        run.clocks.update({f"{key}_{when}": value for key, value in reading.as_dict().items()})
    return reading


def measure(
    ctx: WorkloadContext,
    invoke: Callable[..., list[torch.Tensor]],
    budget: TimingBudget,
    flush_bytes: int,
    checks: int,
    cuda_graph: bool = False,
    lock_clocks: bool = False,
    is_measurement: bool = True,
) -> TimingRun:
    """Time the solution behind `invoke` on fresh inputs of `ctx`'s workload (the method of
    the module docstring). `invoke(kwargs, dps_outputs, timer=None, around=None)` is the
    worker's guarded call; `timer.start()`/`timer.stop()` bracket the user call alone.
    Latencies are in milliseconds. Raises Verdict when a checked iteration is wrong or a
    guard fires."""
    import torch

    on_gpu = ctx.device != "cpu"
    flush = _flusher(ctx.device, flush_bytes)
    run = TimingRun(stats=_stats([0.0], "none", False))
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)

    def fresh(tag: str) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        return ctx.make(tag, "normal"), (allocate_outputs(ctx) if ctx.dps else None)

    deadline = _perf_counter() + budget.warmup_s
    n = 0
    while n == 0 or _perf_counter() < deadline:
        invoke(*fresh(f"warmup{n}"))
        sync()  # wall-clock warm-up: the host must not run ahead of the GPU
        n += 1

    check_at = {secrets.randbelow(budget.min_iters) for _ in range(max(0, checks - 1))}
    device_index = (torch.device(ctx.device).index or 0) if on_gpu else 0
    uuid = (str(getattr(torch.cuda.get_device_properties(device_index), "uuid", "") or "") or None) if on_gpu else None
    lock = _locked_sm_clock(device_index, uuid, run) if (lock_clocks and on_gpu) else contextlib.nullcontext()
    with lock:
        before = _read_clocks(run, device_index, uuid, "before") if on_gpu else None
        if cuda_graph and on_gpu:
            samples, method = _graph_loop(ctx, invoke, budget, flush, check_at, checks, run)
        else:
            samples, method = _loop(ctx, invoke, budget, flush, check_at, checks, fresh, sync, on_gpu)
        after = _read_clocks(run, device_index, uuid, "after") if on_gpu else None
    if before is not None and after is not None:
        from solforge.hardware.nvml import throttled

        reason = throttled(before, after)
        if reason:
            run.warnings.append(f"the GPU throttled while timing: {reason}")
    run.stats = _stats(samples, method, is_measurement)
    return run


def _loop(ctx, invoke, budget, flush, check_at, checks, fresh, sync, on_gpu) -> tuple[list[float], str]:
    timer = CudaTimer(flush) if on_gpu else CpuTimer(flush)
    ring: deque = deque(maxlen=2)  # the last iterations' tensors, kept so that addresses are fresh
    start = _perf_counter()
    for i in range(budget.max_iters):
        if i >= budget.min_iters and _perf_counter() - start >= budget.max_time_s:
            break
        inputs, dps = fresh(f"time{i}")
        outputs = invoke(inputs, dps, timer=timer)
        sync()  # every call starts on an idle device, watched by the guards or not (baselines)
        if i in check_at:
            _check_sample(ctx, inputs, outputs, i)
        ring.append((i, inputs, outputs))
    if checks > 0:
        last, inputs, outputs = ring[-1]
        _check_sample(ctx, inputs, outputs, last)
    return timer.results_ms(), ("cuda-events+l2-flush" if on_gpu else "perf_counter+cache-flush")


def _graph_loop(ctx, invoke, budget, flush, check_at, checks, run) -> tuple[list[float], str]:
    import torch

    static = ctx.make("graph", "normal")
    static_dps = allocate_outputs(ctx) if ctx.dps else None
    graph = torch.cuda.CUDAGraph()
    try:
        outputs = invoke(static, static_dps, around=lambda: torch.cuda.graph(graph))
    except Verdict as v:
        if v.status is not EvaluationStatus.RUNTIME_ERROR:
            raise
        # Not capturable (a host sync, a CPU fallback): time with events instead. Had the
        # capture broken the CUDA context, the events loop fails with the error itself.
        run.warnings.append(f"cuda_graph: capture failed ({v.message.splitlines()[0]}); timed with CUDA events")
        return _loop(ctx, invoke, budget, flush, check_at, checks,
                     lambda tag: (ctx.make(tag, "normal"), allocate_outputs(ctx) if ctx.dps else None),
                     torch.cuda.synchronize, True)
    timer = CudaTimer(flush)
    start = _perf_counter()
    for i in range(budget.max_iters):
        if i >= budget.min_iters and _perf_counter() - start >= budget.max_time_s:
            break
        values = ctx.make(f"time{i}", "normal")
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                static[name].copy_(value)
        timer.start()
        graph.replay()
        timer.stop()
        torch.cuda.synchronize()
        last = i
        if i in check_at:
            _check_sample(ctx, static, outputs, i)
    if checks > 0:
        _check_sample(ctx, static, outputs, last)
    return timer.results_ms(), "cuda-graph+l2-flush"
