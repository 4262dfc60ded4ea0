"""Compile targets: the per-SM resource limits a kernel is checked against before GPU time.

A `CompileTarget` names one SASS target (`sm_80`, `sm_90a`, `sm_100a`) with the figures
the occupancy calculation and the launch checks need: SM count, registers per SM and per
thread, shared memory per SM and per block, threads per block, resident warps and blocks
per SM, and the allocation granularities. Every figure carries its source in `sources`.

The SM count is the datasheet's (`hardware.datasheet`) for the target's first device;
the other devices of a target share every per-SM figure (same compute capability) and
may differ in SM count (H100 PCIe: 114, H100 SXM and H200: 132), which `devices` names.

Sources, cited per figure:
- CUDA C++ Programming Guide, table "Technical Specifications per Compute Capability"
  (threads per block, resident warps and blocks per SM, registers, shared memory);
- NVIDIA Ampere / Hopper / Blackwell Tuning Guides, "Shared Memory" sections (the
  shared-memory capacities per SM and per block, and the 1 KB reserved per block);
- the CUDA Toolkit's occupancy calculator header, `include/cuda_occupancy.h` (CUDA 13.0),
  for the allocation granularities the programming guide does not tabulate
  (`cudaOccRegAllocationGranularity`, `cudaOccSMemAllocationGranularity`,
  `cudaOccSubPartitionsPerMultiprocessor`, `cudaOccMaxBlocksPerSMBlockBarrierLimit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from solforge.hardware.datasheet import spec_by_key
from solforge.spec import SpecError

KiB = 1024

_GUIDE = "CUDA C++ Programming Guide, table 'Technical Specifications per Compute Capability', column {cc}"
_OCC = "CUDA Toolkit 13.0 include/cuda_occupancy.h, {fn}"
_AMPERE_TG = "NVIDIA Ampere GPU Architecture Tuning Guide, 1.4.1.1 'Shared Memory'"
_HOPPER_TG = "NVIDIA Hopper Tuning Guide, 1.4.1.1 'Increased Shared Memory Capacity'"
_BLACKWELL_TG = "NVIDIA Blackwell Tuning Guide, 'Increased L1 and Shared Memory Capacity'"


@dataclass(frozen=True)
class CompileTarget:
    """One SASS target and the per-SM limits a compiled kernel must fit.

    Counts are per SM unless named otherwise; memory in bytes. `capability` is the
    compute capability as an int (90 for 9.0), what `triton.backends.compiler.GPUTarget`
    takes; `sass` is the ptxas `--gpu-name` (`sm_90a`: the arch-specific features, wgmma
    on Hopper, tcgen05 on Blackwell, which Triton emits for capability >= 90).
    """

    name: str  # "sm_90a"
    sass: str  # ptxas --gpu-name
    ptx_arch: str  # nvcc -gencode arch=..., e.g. "compute_90a"
    capability: int  # 90
    devices: tuple[str, ...]  # datasheet keys of the devices this target runs on
    sm_count: int  # SMs of devices[0]
    warp_size: int
    max_threads_per_block: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    registers_per_sm: int  # 32-bit registers
    max_registers_per_block: int
    max_registers_per_thread: int
    register_allocation_unit: int  # registers per warp are rounded up to this
    sub_partitions_per_sm: int  # the register file is split across these (warp schedulers)
    shared_memory_per_sm_bytes: int  # the largest carveout
    max_shared_memory_per_block_bytes: int  # opt-in maximum, excluding the reserved 1 KB
    default_shared_memory_per_block_bytes: int  # without the opt-in attribute (static __shared__ limit)
    reserved_shared_memory_per_block_bytes: int  # taken by the driver from every block
    shared_memory_allocation_unit_bytes: int
    barriers_per_block_limit_factor: int  # barriers available per SM = factor x max_blocks_per_sm
    sources: dict[str, str] = field(compare=False, repr=False)

    @property
    def gencode(self) -> str:
        """nvcc's `-gencode` value: SASS for this target, e.g. 'arch=compute_90a,code=sm_90a'."""
        return f"arch={self.ptx_arch},code={self.sass}"


def _common_sources(cc: str, smem_src: str) -> dict[str, str]:
    guide = _GUIDE.format(cc=cc)
    return {
        "warp_size": f"{guide}: warp size 32",
        "max_threads_per_block": f"{guide}: maximum number of threads per block 1024",
        "max_warps_per_sm": f"{guide}: maximum number of resident warps per SM 64",
        "max_blocks_per_sm": f"{guide}: maximum number of resident blocks per SM 32 "
        f"(cudaOccMaxBlocksPerMultiprocessor agrees)",
        "registers_per_sm": f"{guide}: number of 32-bit registers per SM 64 K",
        "max_registers_per_block": f"{guide}: maximum number of 32-bit registers per thread block 64 K",
        "max_registers_per_thread": f"{guide}: maximum number of 32-bit registers per thread 255",
        "register_allocation_unit": _OCC.format(fn="cudaOccRegAllocationGranularity: 256 registers, per warp"),
        "sub_partitions_per_sm": _OCC.format(fn="cudaOccSubPartitionsPerMultiprocessor: 4"),
        "shared_memory_per_sm_bytes": f"{smem_src}; {guide}: maximum amount of shared memory per SM",
        "max_shared_memory_per_block_bytes": f"{smem_src}; {guide}: maximum amount of shared memory per thread block",
        "default_shared_memory_per_block_bytes": f"{guide}, footnote: above 48 KB a block needs dynamic shared "
        "memory and the cudaFuncAttributeMaxDynamicSharedMemorySize opt-in (Triton opts in)",
        "reserved_shared_memory_per_block_bytes": f"{smem_src}: CUDA reserves 1 KB of shared memory per thread block",
        "shared_memory_allocation_unit_bytes": _OCC.format(fn="cudaOccSMemAllocationGranularity: 128 bytes on 8.x-12.x"),
        "barriers_per_block_limit_factor": _OCC.format(
            fn="cudaOccMaxBlocksPerSMBlockBarrierLimit: barriers available = 2 x max blocks per SM on 8.0, 9.x, 10.0"
        ),
    }


def _target(name: str, capability: int, devices: tuple[str, ...], cc: str, smem_per_sm_kib: int,
            smem_src: str) -> CompileTarget:  # fmt: skip
    device = spec_by_key(devices[0])
    sources = _common_sources(cc, smem_src)
    sources["sm_count"] = f"hardware.datasheet '{device.key}': {device.sources['sm_count']}"
    suffix = "a" if capability >= 90 else ""
    return CompileTarget(
        name=name,
        sass=f"sm_{capability}{suffix}",
        ptx_arch=f"compute_{capability}{suffix}",
        capability=capability,
        devices=devices,
        sm_count=device.sm_count,
        warp_size=32,
        max_threads_per_block=1024,
        max_warps_per_sm=64,
        max_blocks_per_sm=32,
        registers_per_sm=64 * 1024,
        max_registers_per_block=64 * 1024,
        max_registers_per_thread=255,
        register_allocation_unit=256,
        sub_partitions_per_sm=4,
        shared_memory_per_sm_bytes=smem_per_sm_kib * KiB,
        max_shared_memory_per_block_bytes=(smem_per_sm_kib - 1) * KiB,
        default_shared_memory_per_block_bytes=48 * KiB,
        reserved_shared_memory_per_block_bytes=1 * KiB,
        shared_memory_allocation_unit_bytes=128,
        barriers_per_block_limit_factor=2,
        sources=sources,
    )


SM_80 = _target(
    "sm_80", 80, ("a100-sxm-80gb", "a100-pcie-80gb"), "8.0", 164,
    f"{_AMPERE_TG}: A100 shared memory capacity per SM up to 164 KB, up to 163 KB per thread block",
)
SM_90A = _target(
    "sm_90a", 90, ("h100-sxm", "h200-sxm", "h100-pcie"), "9.0", 228,
    f"{_HOPPER_TG}: H100 shared memory capacity per SM up to 228 KB, up to 227 KB per thread block",
)
SM_100A = _target(
    "sm_100a", 100, ("b200",), "10.0", 228,
    f"{_BLACKWELL_TG}: shared memory capacity per SM up to 228 KB, up to 227 KB per thread block",
)

TARGETS: dict[str, CompileTarget] = {t.name: t for t in (SM_80, SM_90A, SM_100A)}
DEFAULT_TARGET = "sm_90a"  # H100 / H200: the project's GPU machines


def target_by_name(name: str) -> CompileTarget:
    """The compile target called `name` ('sm_80', 'sm_90a', 'sm_100a').

    Raises SpecError (one line, naming the known targets) for any other name.
    """
    target = TARGETS.get(name.strip().lower())
    if target is None:
        raise SpecError(f"--target: unknown target '{name}' (expected one of: {', '.join(TARGETS)})")
    return target
