"""The CPU as a device kind: the host's cores, timed with perf_counter, calibrated by STREAM and torch.mm.

Identity: the model name from /proc/cpuinfo, the logical CPUs this process may use (its
affinity), physical memory, and the last-level cache from sysfs (the cache a timing
flush must overwrite). The CPU has no datasheet row: only calibrated ceilings bound it.

Workers on the CPU run Triton kernels under the Triton interpreter (TRITON_INTERPRET=1):
correct results, but a time that is not the kernel's.

Calibration: a STREAM triad `a = b + s * c` over float64 arrays of 4x the last-level
cache (STREAM's rule; at most 1 GiB each, with a warning when that cap bites), counting
3 arrays x 8 bytes per element as STREAM does; matmul GFLOP/s of torch.mm for float32
(2048^3) and float64 (1536^3). Each figure is the best of CPU_REPEATS timed runs after a
warm-up (STREAM's rule: other processes share the cores, so the fastest run is the
ceiling); its median and IQR are recorded, and a round whose IQR exceeds 10% of its
median is run again, then marked unstable (`solforge.hardware.measure`).
"""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from solforge.hardware.ceilings import Ceilings, library_versions
from solforge.hardware.datasheet import DeviceSpec
from solforge.hardware.identity import DeviceIdentity
from solforge.hardware.measure import perf_counter_round, timed_rounds
from solforge.hardware.registry import DeviceKind, DeviceMemory, TimerKind, register_device_kind

GiB = 2**30
MiB = 2**20

CPU_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
MEMINFO = Path("/proc/meminfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")

CPU_TRIAD_MAX_ARRAY_BYTES = 1 * GiB
CPU_MATMUL_SIZES = {"float32": 2048, "float64": 1536}
CPU_REPEATS = 7
CPU_ATTEMPTS = 2  # one re-run of an unstable figure, then it is marked unstable


@register_device_kind
class CpuKind(DeviceKind):
    """The host CPU: one device ('cpu'), all the cores this process may use."""

    name = "cpu"
    indexed = False
    priority = 0
    timer = TimerKind.perf_counter
    languages = ("numba", "pytorch")
    env = {"TRITON_INTERPRET": "1"}

    def count(self) -> int:
        return 1

    def identify(self, index: int) -> DeviceIdentity:
        return DeviceIdentity(
            kind="cpu", index=0, name=cpu_name(), compute_capability=None, sm_count=cpu_count(),
            memory_bytes=physical_memory_bytes(), cache_bytes=cpu_last_level_cache_bytes(),
        )

    def match(self, identity: DeviceIdentity) -> tuple[DeviceSpec | None, str]:
        return None, f"CPU '{identity.name}': no datasheet peaks, only calibrated ceilings"

    def memory(self, index: int) -> DeviceMemory:
        return host_memory()

    def measure_ceilings(self, identity: DeviceIdentity) -> Ceilings:
        return measure_cpu(identity)


# ---- identity ---------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, else what `platform` knows, else 'cpu'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_count() -> int:
    """Logical CPUs this process may run on (its affinity), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_cache_size(text: str) -> int:
    """Bytes of a sysfs cache size such as '48K', '2048K', '32M' or '1024'; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a cache size: {text!r}")
    return int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2).upper()]


def cpu_last_level_cache_bytes(cache_dir: Path = CPU_CACHE_DIR) -> int | None:
    """The largest data (or unified) cache of cpu0, in bytes, from sysfs `index*/size`; None where unreadable.

    On most servers this is the L3 shared by the whole socket (or the VM's host socket).
    """
    sizes = []
    for index in sorted(cache_dir.glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            sizes.append(parse_cache_size((index / "size").read_text()))
        except (OSError, ValueError):
            continue
    return max(sizes) if sizes else None


def physical_memory_bytes() -> int | None:
    """Physical memory of the host, bytes (sysconf); None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def host_memory(meminfo: Path = MEMINFO, cgroup_root: Path = CGROUP_ROOT) -> DeviceMemory:
    """Total and free host memory in bytes, within this process's cgroup (v2) limit where one is set.

    Free is /proc/meminfo's MemAvailable (what can be allocated without swapping, page
    cache included; source: proc(5)), else sysconf's available pages; a cgroup v2
    `memory.max` lowers both to the limit and to the limit minus `memory.current`.
    """
    total, free = physical_memory_bytes(), None
    try:
        for line in meminfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "MemAvailable":
                free = int(value.split()[0]) * 1024  # meminfo counts kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            free = None
    try:
        limit_text = (cgroup_root / "memory.max").read_text().strip()
        if limit_text != "max":
            limit = int(limit_text)
            used = int((cgroup_root / "memory.current").read_text().strip())
            total = min(total, limit) if total is not None else limit
            free = min(free, max(limit - used, 0)) if free is not None else max(limit - used, 0)
    except (OSError, ValueError):
        pass
    return DeviceMemory(total_bytes=total, free_bytes=free)


# ---- calibration ------------------------------------------------------------------------


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


def measure_cpu(identity: DeviceIdentity) -> Ceilings:
    """STREAM triad bandwidth and torch.mm TFLOP/s of this CPU; see the module docstring. A few seconds."""
    import torch

    method: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    spread = {}
    warnings: list[str] = []
    rule = f"best of {CPU_REPEATS} after 1 warm-up (median and IQR kept; re-run once when unstable)"

    n = triad_elements(identity.cache_bytes, host_memory().free_bytes)
    array_bytes = 8 * n
    if identity.cache_bytes and array_bytes < 4 * identity.cache_bytes:
        warnings.append(f"triad arrays of {array_bytes / MiB:.0f} MiB are under 4x the last-level cache "
                        f"({identity.cache_bytes / MiB:.0f} MiB): bandwidth may include cache hits")
    scalar = 3.0
    # STREAM initialises with constants; every page is written before timing.
    a = torch.empty(n, dtype=torch.float64).fill_(1.0)
    b = torch.empty(n, dtype=torch.float64).fill_(2.0)
    c = torch.empty(n, dtype=torch.float64).fill_(0.5)
    triad = partial(perf_counter_round, torch.add, b, c, alpha=scalar, out=a, repeats=CPU_REPEATS)
    triad_ms, spread["dram_bandwidth_gb_s"] = timed_rounds(triad, attempts=CPU_ATTEMPTS)
    if not (a[0].item() == a[-1].item() == 2.0 + scalar * 0.5):
        raise RuntimeError("STREAM triad gave a wrong result; the bandwidth figure would be meaningless")
    del a, b, c, triad
    bytes_moved = 3 * 8 * n  # STREAM counts read b, read c, write a; write-allocate traffic is not counted
    bandwidth_gb_s = bytes_moved / (min(triad_ms) * 1e-3) / 1e9
    samples["dram_bandwidth_gb_s"] = triad_ms
    method["dram_bandwidth_gb_s"] = (
        f"STREAM triad a = b + {scalar} * c, float64, {n:,} elements per array ({array_bytes / MiB:.0f} MiB), "
        f"bytes = 3 x 8 x n, {rule}, torch {torch.get_num_threads()} threads"
    )

    matmul_tflops: dict[str, float] = {}
    generator = torch.Generator().manual_seed(0)
    for dtype_name, size in CPU_MATMUL_SIZES.items():
        dtype = getattr(torch, dtype_name)
        x = torch.randn(size, size, dtype=dtype, generator=generator)  # (n, n)
        y = torch.randn(size, size, dtype=dtype, generator=generator)  # (n, n)
        figure = f"matmul_tflops.{dtype_name}"
        matmul = partial(perf_counter_round, torch.mm, x, y, repeats=CPU_REPEATS)
        times_ms, spread[figure] = timed_rounds(matmul, attempts=CPU_ATTEMPTS)
        matmul_tflops[dtype_name] = 2 * size**3 / (min(times_ms) * 1e-3) / 1e12  # 2 FLOPs per multiply-add
        samples[figure] = times_ms
        method[figure] = f"torch.mm {size}^3 {dtype_name}, randn inputs, {rule}"

    for figure, figure_spread in spread.items():
        if not figure_spread.stable:
            warnings.append(f"{figure} unstable after {figure_spread.attempts} rounds: IQR "
                            f"{figure_spread.relative_iqr:.0%} of the median (other work shared the cores)")
    return Ceilings(
        device="cpu", device_name=identity.name, sm_count=identity.sm_count, dram_bandwidth_gb_s=bandwidth_gb_s,
        matmul_tflops=matmul_tflops, simt_tflops=matmul_tflops["float32"], method=method, samples_ms=samples,
        spread=spread, warnings=warnings, versions=library_versions(),
        measured_at=datetime.now(timezone.utc).isoformat(), torch_version=torch.__version__,
    )
