"""Theoretical occupancy: how many blocks of a compiled kernel fit on one SM of a target.

The rules are the CUDA occupancy calculator's, as the CUDA Toolkit ships them in
`include/cuda_occupancy.h` (CUDA 13.0: `cudaOccMaxActiveBlocksPerMultiprocessor` and the
`cudaOccMaxBlocksPerSM*Limit` functions it calls); the constants come from the target
(`solforge.hardware.targets`, each with its source). Per resource, the resident blocks
per SM it allows:

- threads: max warps per SM // warps per block (0 above the block's thread limit);
- blocks: the target's max resident blocks per SM;
- registers: registers are allocated per warp, `registers x 32` rounded up to the
  allocation unit (256); the register file is split over 4 sub-partitions, so the warps
  that fit are `(registers per SM / 4) // registers per warp` per sub-partition, times 4.
  A block whose registers, with its warps rounded up to a multiple of 4 (the hardware's
  check), exceed the per-block limit does not launch;
- shared memory: static + dynamic + the 1 KB the driver reserves per block, rounded up
  to the allocation unit (128 bytes); shared memory per SM // that. Above the per-block
  opt-in maximum it does not launch. The carveout is the default (the driver picks the
  largest shared-memory configuration a block needs; the calculator then uses the SM's
  full shared memory);
- barriers: (2 x max blocks per SM) // barriers per block, on 8.0, 9.x and 10.0.

Occupancy = resident blocks x warps per block / max warps per SM. It is theoretical:
achieved occupancy (ncu's `sm__warps_active`) also depends on the grid and on tail effects.
"""

from __future__ import annotations

from solforge.hardware.targets import CompileTarget
from solforge.spec.trace import Occupancy

_UNLIMITED = 1 << 30


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def registers_per_warp(target: CompileTarget, registers_per_thread: int) -> int:
    """Registers one warp is allocated: registers x warp size, rounded up to the allocation unit."""
    return _round_up(registers_per_thread * target.warp_size, target.register_allocation_unit)


def shared_memory_per_block(target: CompileTarget, shared_memory_bytes: int) -> int:
    """Shared memory one block is allocated, in bytes: its own (static + dynamic) plus the
    driver's reserved 1 KB, rounded up to the allocation unit."""
    return _round_up(shared_memory_bytes + target.reserved_shared_memory_per_block_bytes,
                     target.shared_memory_allocation_unit_bytes)  # fmt: skip


def blocks_per_sm_limits(target: CompileTarget, registers_per_thread: int, shared_memory_bytes: int,
                         threads_per_block: int, barriers: int = 1) -> dict[str, int]:  # fmt: skip
    """Resident blocks per SM that each resource allows (see the module docstring).

    `shared_memory_bytes` is the block's static plus dynamic shared memory; 0 for a
    resource means a block of this kernel cannot launch at all.
    """
    warps = -(-threads_per_block // target.warp_size)
    limits: dict[str, int] = {"blocks": target.max_blocks_per_sm}
    limits["threads"] = 0 if threads_per_block > target.max_threads_per_block else target.max_warps_per_sm // warps

    per_warp = registers_per_warp(target, registers_per_thread)
    checked = per_warp * _round_up(warps, target.sub_partitions_per_sm)  # the hardware's per-block check
    if (checked > target.max_registers_per_block or per_warp * warps > target.max_registers_per_block
            or registers_per_thread > target.max_registers_per_thread):  # fmt: skip
        limits["registers"] = 0
    elif per_warp == 0:
        limits["registers"] = _UNLIMITED
    else:
        per_sub_partition = (target.registers_per_sm // target.sub_partitions_per_sm) // per_warp
        limits["registers"] = per_sub_partition * target.sub_partitions_per_sm // warps

    allocated = shared_memory_per_block(target, shared_memory_bytes)
    ceiling = target.max_shared_memory_per_block_bytes + target.reserved_shared_memory_per_block_bytes
    limits["shared_memory"] = 0 if allocated > ceiling else target.shared_memory_per_sm_bytes // allocated

    available = target.barriers_per_block_limit_factor * target.max_blocks_per_sm
    limits["barriers"] = available // barriers if barriers > 0 else _UNLIMITED
    return limits


def theoretical_occupancy(target: CompileTarget, registers_per_thread: int, shared_memory_bytes: int,
                          threads_per_block: int, barriers: int = 1,
                          basis: str = "launch") -> Occupancy:  # fmt: skip
    """Theoretical occupancy of blocks of `threads_per_block` threads on one SM of `target`.

    `shared_memory_bytes` is the block's static plus dynamic shared memory. `limited_by`
    names every resource whose limit is the binding one (ties included); when a block
    cannot launch (`blocks_per_sm == 0`), the resources that forbid it.
    """
    limits = blocks_per_sm_limits(target, registers_per_thread, shared_memory_bytes, threads_per_block, barriers)
    blocks = min(limits.values())
    warps = -(-threads_per_block // target.warp_size)
    active = blocks * warps
    return Occupancy(
        threads_per_block=threads_per_block,
        block_size_basis=basis,
        blocks_per_sm=blocks,
        active_warps_per_sm=active,
        max_warps_per_sm=target.max_warps_per_sm,
        fraction=active / target.max_warps_per_sm,
        limited_by=[k for k in ("registers", "shared_memory", "threads", "blocks", "barriers") if limits[k] == blocks],
        blocks_limit={k: v for k, v in limits.items() if v != _UNLIMITED},
    )


def max_threads_per_block(target: CompileTarget, registers_per_thread: int, launch_bound: int | None = None) -> int:
    """The largest block (a multiple of the warp size) whose registers fit the target's
    per-block limit, capped at the target's thread limit and at `launch_bound` (Triton's
    `.maxntid`, num_warps x 32): what cudaFuncAttributes.maxThreadsPerBlock reports."""
    cap = min(target.max_threads_per_block, launch_bound or target.max_threads_per_block)
    per_warp = registers_per_warp(target, registers_per_thread)
    for threads in range(cap - cap % target.warp_size, 0, -target.warp_size):
        warps = threads // target.warp_size
        if per_warp * _round_up(warps, target.sub_partitions_per_sm) <= target.max_registers_per_block:
            return threads
    return 0


def best_block_size(target: CompileTarget, registers_per_thread: int, shared_memory_bytes: int, barriers: int = 1) -> int:
    """The block size with the highest theoretical occupancy, the largest among ties (as
    cudaOccupancyMaxPotentialBlockSize searches, from the largest block down); 0 when no
    block size can launch."""
    best, best_warps = 0, -1
    top = max_threads_per_block(target, registers_per_thread)
    for threads in range(top, 0, -target.warp_size):
        limits = blocks_per_sm_limits(target, registers_per_thread, shared_memory_bytes, threads, barriers)
        active = min(limits.values()) * (threads // target.warp_size)
        if active > best_warps:
            best, best_warps = threads, active
    return best if best_warps > 0 else 0
