"""Calibrated ceilings: what this very device reaches on a large copy and a large matmul.

Datasheet peaks are what the vendor promises at boost clock; calibrated ceilings are what
this device, in this machine, at its current power and clock settings, actually reaches.
Both SOLs are reported. Clocks are never locked here.

Ceilings are cached as JSON per device, keyed by a slug of the device name plus its SM
count (logical CPU count on the CPU), under `<cache root>/ceilings/`, the cache root being
`solforge.cache.cache_root()` (`$SOLFORGE_CACHE_DIR`, else `platformdirs.user_cache_dir("solforge")`).

CUDA: DRAM bandwidth of a device-to-device copy of max(2 GiB, 8 x L2), counting bytes read
plus bytes written; matmul TFLOP/s at 8192^3 for bfloat16, float16, float32 (TF32 off:
the SIMT ceiling) and float8_e4m3fn (torch._scaled_mm, where the device has FP8), and at
4096^3 for float64. Random inputs, never zeros (zeros let the hardware save power and run
faster than real data). Median of 10 timed runs after 3 warm-up runs, CUDA events.

CPU: a STREAM triad `a = b + s * c` over float64 arrays of 4x the last-level cache
(STREAM's rule; at most 1 GiB each, with a warning when that cap bites), counting 3 arrays
x 8 bytes per element as STREAM does; matmul
GFLOP/s of torch.mm for float32 (2048^3) and float64 (1536^3). Best of 5 after a warm-up
(STREAM's rule: other processes share the cores, so the fastest run is the ceiling).
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from solforge.cache import cache_root
from solforge.hardware.datasheet import Peaks
from solforge.hardware.detect import DeviceIdentity, identify

GiB = 2**30
MiB = 2**20

CUDA_COPY_MIN_BYTES = 2 * GiB
CUDA_MATMUL_SIZE = 8192
CUDA_FP64_MATMUL_SIZE = 4096
CUDA_WARMUP, CUDA_REPEATS = 3, 10
CPU_TRIAD_MAX_ARRAY_BYTES = 1 * GiB
CPU_MATMUL_SIZES = {"float32": 2048, "float64": 1536}
CPU_REPEATS = 5


class Ceilings(BaseModel):
    """The ceilings one device reached when calibrated. Every raw sample is kept."""

    device: Literal["cuda", "cpu"]
    device_name: str = Field(min_length=1, description="As the device reports it.")
    sm_count: int = Field(gt=0, description="SMs / compute units (CUDA) or logical CPUs (CPU): part of the cache key.")
    dram_bandwidth_gb_s: float = Field(gt=0, description="Copy (CUDA) or STREAM triad (CPU) bandwidth, 10^9 bytes/s.")
    matmul_tflops: dict[str, float] = Field(description="Large-matmul TFLOP/s by operand dtype name.")
    simt_tflops: float = Field(gt=0, description="float32 matmul TFLOP/s without tensor cores (TF32 off).")
    method: dict[str, str] = Field(default_factory=dict, description="How each figure was measured.")
    samples_ms: dict[str, list[float]] = Field(default_factory=dict, description="Every timed run, ms, per figure.")
    skipped: dict[str, str] = Field(default_factory=dict, description="Dtypes not measured, and why.")
    warnings: list[str] = Field(default_factory=list, description="e.g. the GPU throttled during calibration.")
    measured_at: str = Field(description="ISO 8601 UTC time of the measurement.")
    torch_version: str

    def peaks(self) -> Peaks:
        """These ceilings as `Peaks(source="calibrated")`.

        float32 is the SIMT rate, not a tensor entry. float8_e5m2 takes the measured
        float8_e4m3fn rate (both formats run at one rate on every FP8 tensor core).
        """
        tensor = {name: tflops for name, tflops in self.matmul_tflops.items() if name != "float32"}
        if "float8_e4m3fn" in tensor:
            tensor.setdefault("float8_e5m2", tensor["float8_e4m3fn"])
        return Peaks(tensor, self.simt_tflops, self.dram_bandwidth_gb_s, "calibrated")


def calibrate(device: str, force: bool = False) -> Ceilings:
    """Measure the ceilings of `device` ("cuda", "cuda:N" or "cpu"), or read them from the cache.

    With `force`, measure even if cached. The result is written to `ceilings_path(device)`.
    Takes a few seconds on a CPU, well under a minute on a GPU. Raises SpecError for an
    unknown device string or CUDA requested where there is none. See the module docstring
    for what is measured and how.
    """
    identity = identify(device)
    if not force:
        cached = load_cached(identity)
        if cached is not None:
            return cached
    ceilings = _measure_cuda(identity) if identity.device == "cuda" else _measure_cpu(identity)
    _write(cache_path(identity), ceilings)
    return ceilings


def ceilings_path(device: str) -> Path:
    """Where the ceilings of `device` are cached (the file may not exist yet)."""
    return cache_path(identify(device))


def cache_path(identity: DeviceIdentity) -> Path:
    """`<cache root>/ceilings/<slug of name>-<N>sm.json` (`-<N>cpu.json` on the CPU)."""
    slug = re.sub(r"[^a-z0-9]+", "-", identity.name.lower()).strip("-") or identity.device
    unit = "sm" if identity.device == "cuda" else "cpu"
    return cache_root() / "ceilings" / f"{slug}-{identity.sm_count}{unit}.json"


def load_cached(identity: DeviceIdentity) -> Ceilings | None:
    """The cached ceilings of this device, or None if absent, unreadable, or another device's."""
    path = cache_path(identity)
    try:
        ceilings = Ceilings.model_validate_json(path.read_text())
    except (OSError, ValidationError, ValueError):
        return None  # a missing or stale cache is re-measured, never an error
    if (ceilings.device, ceilings.device_name, ceilings.sm_count) != (
        identity.device, identity.name, identity.sm_count
    ):
        return None
    return ceilings


def triad_elements(llc_bytes: int | None, available_bytes: int | None) -> int:
    """float64 elements per STREAM triad array: 4x the last-level cache, capped at 1 GiB and 1/8 of free memory.

    STREAM's rule is that each array be at least 4x the last-level cache, so the caches
    cannot hold the working set. The caps keep the three arrays within reach of a small
    machine; the floor is 64 MiB. Source: J. McCalpin, STREAM benchmark, "Array size" rules.
    """
    per_array = 4 * (llc_bytes or 32 * MiB)
    per_array = min(per_array, CPU_TRIAD_MAX_ARRAY_BYTES)
    if available_bytes:
        per_array = min(per_array, available_bytes // 8)
    return max(per_array, 64 * MiB) // 8


# ---- CPU --------------------------------------------------------------------------------


def _measure_cpu(identity: DeviceIdentity) -> Ceilings:
    import torch

    method: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    warnings: list[str] = []

    n = triad_elements(identity.l2_bytes, _available_memory_bytes())
    array_bytes = 8 * n
    if identity.l2_bytes and array_bytes < 4 * identity.l2_bytes:
        warnings.append(f"triad arrays of {array_bytes / MiB:.0f} MiB are under 4x the last-level cache "
                        f"({identity.l2_bytes / MiB:.0f} MiB): bandwidth may include cache hits")
    scalar = 3.0
    # STREAM initialises with constants; every page is written before timing.
    a = torch.empty(n, dtype=torch.float64).fill_(1.0)
    b = torch.empty(n, dtype=torch.float64).fill_(2.0)
    c = torch.empty(n, dtype=torch.float64).fill_(0.5)
    triad_ms = _cpu_best_of(torch.add, b, c, alpha=scalar, out=a)
    if not (a[0].item() == a[-1].item() == 2.0 + scalar * 0.5):
        raise RuntimeError("STREAM triad gave a wrong result; the bandwidth figure would be meaningless")
    del a, b, c
    bytes_moved = 3 * 8 * n  # STREAM counts read b, read c, write a; write-allocate traffic is not counted
    bandwidth_gb_s = bytes_moved / (min(triad_ms) * 1e-3) / 1e9
    samples["dram_bandwidth_gb_s"] = triad_ms
    method["dram_bandwidth_gb_s"] = (
        f"STREAM triad a = b + {scalar} * c, float64, {n:,} elements per array ({array_bytes / MiB:.0f} MiB), "
        f"bytes = 3 x 8 x n, best of {CPU_REPEATS} after 1 warm-up, torch {torch.get_num_threads()} threads"
    )

    matmul_tflops: dict[str, float] = {}
    generator = torch.Generator().manual_seed(0)
    for dtype_name, size in CPU_MATMUL_SIZES.items():
        dtype = getattr(torch, dtype_name)
        x = torch.randn(size, size, dtype=dtype, generator=generator)  # (n, n)
        y = torch.randn(size, size, dtype=dtype, generator=generator)  # (n, n)
        times_ms = _cpu_best_of(torch.mm, x, y)
        matmul_tflops[dtype_name] = 2 * size**3 / (min(times_ms) * 1e-3) / 1e12  # 2 FLOPs per multiply-add
        samples[f"matmul_tflops.{dtype_name}"] = times_ms
        method[f"matmul_tflops.{dtype_name}"] = f"torch.mm {size}^3 {dtype_name}, randn inputs, best of {CPU_REPEATS}"

    return Ceilings(
        device="cpu", device_name=identity.name, sm_count=identity.sm_count, dram_bandwidth_gb_s=bandwidth_gb_s,
        matmul_tflops=matmul_tflops, simt_tflops=matmul_tflops["float32"], method=method, samples_ms=samples,
        warnings=warnings, measured_at=_now(), torch_version=torch.__version__,
    )


def _cpu_best_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[float]:
    """One warm-up run of `fn(*args, **kwargs)`, then CPU_REPEATS timed runs; samples in ms (callers take the best)."""
    fn(*args, **kwargs)
    samples = []
    for _ in range(CPU_REPEATS):
        start = time.perf_counter()
        fn(*args, **kwargs)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _available_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


# ---- CUDA -------------------------------------------------------------------------------


def _measure_cuda(identity: DeviceIdentity) -> Ceilings:
    import torch

    from solforge.hardware.nvml import read_clocks, throttled

    device = torch.device("cuda", identity.index)
    method: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    warnings: list[str] = []
    before = read_clocks(uuid=identity.uuid)

    with torch.cuda.device(device):
        generator = torch.Generator(device=device).manual_seed(0)

        free_bytes, _ = torch.cuda.mem_get_info(device)
        copy_bytes = max(CUDA_COPY_MIN_BYTES, 8 * (identity.l2_bytes or 0))
        copy_bytes = min(copy_bytes, free_bytes // 3) // 16 * 16  # two buffers, with headroom
        if identity.l2_bytes and copy_bytes < 8 * identity.l2_bytes:
            warnings.append(f"copy of {copy_bytes / MiB:.0f} MiB is under 8x the L2: bandwidth may include L2 hits")
        src = torch.empty(copy_bytes // 4, dtype=torch.float32, device=device).uniform_(-1.0, 1.0, generator=generator)
        dst = torch.empty_like(src)
        copy_ms = _cuda_times_ms(dst.copy_, src)
        del src, dst
        bytes_moved = 2 * copy_bytes  # each byte is read once and written once
        bandwidth_gb_s = bytes_moved / (statistics.median(copy_ms) * 1e-3) / 1e9
        samples["dram_bandwidth_gb_s"] = copy_ms
        method["dram_bandwidth_gb_s"] = (
            f"device-to-device copy of {copy_bytes / GiB:.2f} GiB, bytes = read + written, "
            f"median of {CUDA_REPEATS} after {CUDA_WARMUP} warm-up, CUDA events"
        )

        matmul_tflops: dict[str, float] = {}
        with _tf32_off(torch):
            for dtype_name, size, make in _cuda_matmuls(torch, device, generator, identity):
                try:
                    times_ms = _cuda_times_ms(*make())
                except Exception as exc:  # a dtype this device or torch build does not support
                    skipped[dtype_name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                    continue
                finally:
                    torch.cuda.empty_cache()
                matmul_tflops[dtype_name] = 2 * size**3 / (statistics.median(times_ms) * 1e-3) / 1e12
                samples[f"matmul_tflops.{dtype_name}"] = times_ms
                method[f"matmul_tflops.{dtype_name}"] = (
                    f"{size}^3 {dtype_name} on randn inputs, median of {CUDA_REPEATS} after {CUDA_WARMUP} warm-up"
                    + (", TF32 off" if dtype_name == "float32" else "")
                )

    after = read_clocks(uuid=identity.uuid)
    if (warning := throttled(before, after)) is not None:
        warnings.append(warning)
    if after is not None and after.sm_clock_mhz is not None:
        method["clocks"] = (f"SM clock after calibration {after.sm_clock_mhz} MHz "
                            f"(max {after.max_sm_clock_mhz} MHz); clocks not locked")
    if "float32" not in matmul_tflops:
        raise RuntimeError(f"float32 matmul could not be measured on {identity.name}: {skipped.get('float32')}")
    return Ceilings(
        device="cuda", device_name=identity.name, sm_count=identity.sm_count, dram_bandwidth_gb_s=bandwidth_gb_s,
        matmul_tflops=matmul_tflops, simt_tflops=matmul_tflops["float32"], method=method, samples_ms=samples,
        skipped=skipped, warnings=warnings, measured_at=_now(), torch_version=torch.__version__,
    )


def _cuda_matmuls(
    torch: Any, device: Any, generator: Any, identity: DeviceIdentity
) -> list[tuple[str, int, Callable[[], tuple[Any, ...]]]]:
    """(dtype name, size, make) per measured matmul; `make()` allocates the inputs and returns (fn, *args) to time."""

    def plain(dtype: Any, size: int) -> Callable[[], tuple[Any, ...]]:
        def make() -> tuple[Any, ...]:
            x = torch.randn(size, size, dtype=dtype, device=device, generator=generator)  # (n, n)
            y = torch.randn(size, size, dtype=dtype, device=device, generator=generator)  # (n, n)
            return torch.mm, x, y

        return make

    def fp8() -> tuple[Any, ...]:
        cc = identity.compute_capability or (0, 0)
        if torch.version.hip is None and cc < (8, 9):
            raise NotImplementedError(f"no FP8 tensor cores on sm_{cc[0]}{cc[1]}")
        fp8_dtype = torch.float8_e4m3fnuz if torch.version.hip else torch.float8_e4m3fn
        size = CUDA_MATMUL_SIZE
        x = torch.randn(size, size, device=device, generator=generator).to(fp8_dtype)  # (M, K) row-major
        # _scaled_mm wants its second operand column-major: the transpose of a row-major (N, K).
        y = torch.randn(size, size, device=device, generator=generator).to(fp8_dtype).t()  # (K, N)
        one = torch.ones((), dtype=torch.float32, device=device)  # per-tensor scales
        return partial(torch._scaled_mm, scale_a=one, scale_b=one, out_dtype=torch.bfloat16), x, y

    return [
        ("bfloat16", CUDA_MATMUL_SIZE, plain(torch.bfloat16, CUDA_MATMUL_SIZE)),
        ("float16", CUDA_MATMUL_SIZE, plain(torch.float16, CUDA_MATMUL_SIZE)),
        ("float32", CUDA_MATMUL_SIZE, plain(torch.float32, CUDA_MATMUL_SIZE)),
        ("float64", CUDA_FP64_MATMUL_SIZE, plain(torch.float64, CUDA_FP64_MATMUL_SIZE)),
        ("float8_e4m3fn", CUDA_MATMUL_SIZE, fp8),
    ]


@contextlib.contextmanager
def _tf32_off(torch: Any) -> Iterator[None]:
    """Run float32 matmuls in IEEE fp32 (TF32 off): the SIMT ceiling that fp32 tolerances need.

    torch >= 2.9 has a per-backend setting and refuses to read the legacy one once the new
    one was written, so use the new one where it exists.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        previous = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = previous
    else:
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(previous)


def _cuda_times_ms(fn: Callable[..., Any], *args: Any) -> list[float]:
    """CUDA_WARMUP untimed runs of `fn(*args)`, then CUDA_REPEATS runs each between two CUDA events; samples in ms."""
    import torch

    for _ in range(CUDA_WARMUP):
        fn(*args)
    torch.cuda.synchronize()
    samples = []
    for _ in range(CUDA_REPEATS):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return samples


# ---- cache ------------------------------------------------------------------------------


def _write(path: Path, ceilings: Ceilings) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(ceilings.model_dump_json(indent=2))
    os.replace(tmp, path)  # readers never see half a file


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
