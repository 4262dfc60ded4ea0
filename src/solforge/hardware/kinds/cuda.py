"""CUDA GPUs as a device kind: 'cuda' / 'cuda:N', timed with CUDA events, matched to the datasheet.

Identity comes from `torch.cuda.get_device_properties` (a ROCm build of torch reports
AMD GPUs here too), the memory interface from NVML where available; matching is by
properties (`solforge.hardware.identity.match_device`), never by name alone. Workers on
a GPU must not run Triton under its interpreter: TRITON_INTERPRET is removed.

Calibration: DRAM bandwidth of a device-to-device copy of max(2 GiB, 8 x L2), counting
bytes read plus bytes written; matmul TFLOP/s at 8192^3 for bfloat16, float16, float32
(TF32 off: the SIMT ceiling) and float8_e4m3fn (torch._scaled_mm, where the device has
FP8), and at 4096^3 for float64. Random inputs, never zeros (zeros let the hardware save
power and run faster than real data). Median of 10 timed runs after 3 warm-up runs, CUDA
events; the median and IQR of each figure are recorded. Clocks are never locked here.

This file's GPU paths were not run on a GPU by the change that moved them here (the
machine had none); the code is the calibration that ran before, plus the recorded spread.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import partial
from typing import Any

from solforge.hardware.ceilings import Ceilings, library_versions
from solforge.hardware.datasheet import DeviceSpec
from solforge.hardware.identity import DeviceIdentity, match_device
from solforge.hardware.measure import Spread, spread_of
from solforge.hardware.registry import DeviceKind, DeviceMemory, TimerKind, register_device_kind
from solforge.spec import SpecError

GiB = 2**30
MiB = 2**20

CUDA_COPY_MIN_BYTES = 2 * GiB
CUDA_MATMUL_SIZE = 8192
CUDA_FP64_MATMUL_SIZE = 4096
CUDA_WARMUP, CUDA_REPEATS = 3, 10


@register_device_kind
class CudaKind(DeviceKind):
    """NVIDIA (and, through a ROCm build of torch, AMD) GPUs: 'cuda', 'cuda:N'."""

    name = "cuda"
    indexed = True
    priority = 10
    timer = TimerKind.cuda_events
    languages = ("triton", "pytorch", "cuda")
    env = {"TRITON_INTERPRET": None}

    def count(self) -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def identify(self, index: int) -> DeviceIdentity:
        import torch

        if not torch.cuda.is_available():
            raise SpecError(f"device 'cuda:{index}': no CUDA device is available here; use --device cpu")
        if index >= torch.cuda.device_count():
            raise SpecError(f"device 'cuda:{index}': only {torch.cuda.device_count()} CUDA device(s) are visible")
        props = torch.cuda.get_device_properties(index)
        uuid = getattr(props, "uuid", None)
        return DeviceIdentity(
            kind="cuda", index=index, name=props.name, compute_capability=(props.major, props.minor),
            sm_count=props.multi_processor_count, memory_bytes=props.total_memory,
            cache_bytes=getattr(props, "L2_cache_size", None) or None, uuid=str(uuid) if uuid else None,
        )

    def match(self, identity: DeviceIdentity) -> tuple[DeviceSpec | None, str]:
        from solforge.hardware.nvml import read_memory_interface

        assert identity.compute_capability is not None and identity.memory_bytes is not None
        return match_device(
            identity.name, identity.compute_capability, identity.sm_count, identity.memory_bytes,
            memory_interface=read_memory_interface(uuid=identity.uuid),
        )

    def memory(self, index: int) -> DeviceMemory:
        import torch

        free_bytes, total_bytes = torch.cuda.mem_get_info(index)
        return DeviceMemory(total_bytes=total_bytes, free_bytes=free_bytes)

    def measure_ceilings(self, identity: DeviceIdentity) -> Ceilings:
        return measure_cuda(identity)


def measure_cuda(identity: DeviceIdentity) -> Ceilings:
    """Copy bandwidth and matmul TFLOP/s of this GPU; see the module docstring. Under a minute."""
    import torch

    from solforge.hardware.nvml import read_clocks, throttled

    device = torch.device("cuda", identity.index)
    method: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    spread: dict[str, Spread] = {}
    skipped: dict[str, str] = {}
    warnings: list[str] = []
    before = read_clocks(uuid=identity.uuid)

    with torch.cuda.device(device):
        generator = torch.Generator(device=device).manual_seed(0)

        free_bytes, _ = torch.cuda.mem_get_info(device)
        copy_bytes = max(CUDA_COPY_MIN_BYTES, 8 * (identity.cache_bytes or 0))
        copy_bytes = min(copy_bytes, free_bytes // 3) // 16 * 16  # two buffers, with headroom
        if identity.cache_bytes and copy_bytes < 8 * identity.cache_bytes:
            warnings.append(f"copy of {copy_bytes / MiB:.0f} MiB is under 8x the L2: bandwidth may include L2 hits")
        src = torch.empty(copy_bytes // 4, dtype=torch.float32, device=device).uniform_(-1.0, 1.0, generator=generator)
        dst = torch.empty_like(src)
        copy_ms = _cuda_times_ms(dst.copy_, src)
        del src, dst
        bytes_moved = 2 * copy_bytes  # each byte is read once and written once
        bandwidth_gb_s = bytes_moved / (statistics.median(copy_ms) * 1e-3) / 1e9
        samples["dram_bandwidth_gb_s"] = copy_ms
        spread["dram_bandwidth_gb_s"] = spread_of(copy_ms)
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
                spread[f"matmul_tflops.{dtype_name}"] = spread_of(times_ms)
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
        spread=spread, skipped=skipped, warnings=warnings, versions=library_versions(),
        measured_at=datetime.now(timezone.utc).isoformat(), torch_version=torch.__version__,
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
