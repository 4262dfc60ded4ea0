"""Cross-compiling candidates for a GPU target on any machine, before they cost GPU time.

    from solforge.bench.crosscompile import cross_compile, CrossCompileError
    reports = cross_compile(solution, definition, workloads, "sm_90a")  # list[CompileReport]

- `cross_compile(solution, definition, workloads, target, isolate=True, timeout_s=300)`:
  Triton kernels specialized from each workload's shapes and dtypes as the launcher
  would, compiled by Triton and its bundled ptxas; CUDA C++ `.cu` sources by nvcc. One
  `CompileReport` per kernel specialization: registers per thread, spill stores and
  loads, static and dynamic shared memory, block size, the largest block the registers
  allow, theoretical occupancy and what limits it, ptxas' warnings.
- `CrossCompileError` (`kind`, `message`, `kernel`, `workload`, `target`): a compile
  error, a launch that cannot be specialized, or a launch beyond the target's limits,
  with the tool's own message. The harness records it as COMPILE_ERROR.
- `SPILL_THRESHOLD_BYTES`, `exceeds_spill_threshold`, `spill_note`: the search's spill
  policy. `reports_for_workload`: what one Trace carries
  (`evaluation.solforge.compile_reports`). `format_reports`: plain text;
  `compile_report_section`: the agent's `profile` tool's section without a GPU.
- Targets: `solforge.hardware.targets` (`sm_80`, `sm_90a`, `sm_100a`).

Module map: `api` (the entry point and its child process, `worker`), `triton`, `cuda`,
`ptxas` (reading ptxas -v), `occupancy` (the CUDA occupancy calculator's rules),
`report` (the error, the spill policy, text). Nothing here has run on a GPU: the figures
are ptxas' and the occupancy calculator's, not measurements. triton and torch are
imported inside the functions that need them.
"""

from __future__ import annotations

from solforge.bench.crosscompile.api import DEFAULT_TIMEOUT_S, can_cross_compile, compile_report_section, cross_compile
from solforge.bench.crosscompile.report import (
    SPILL_THRESHOLD_BYTES,
    CompileReport,
    CrossCompileError,
    Occupancy,
    exceeds_spill_threshold,
    format_reports,
    reports_for_workload,
    spill_note,
)
from solforge.hardware.targets import DEFAULT_TARGET, TARGETS, CompileTarget, target_by_name

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT_S",
    "SPILL_THRESHOLD_BYTES",
    "TARGETS",
    "CompileReport",
    "CompileTarget",
    "CrossCompileError",
    "Occupancy",
    "can_cross_compile",
    "compile_report_section",
    "cross_compile",
    "exceeds_spill_threshold",
    "format_reports",
    "reports_for_workload",
    "spill_note",
    "target_by_name",
]
