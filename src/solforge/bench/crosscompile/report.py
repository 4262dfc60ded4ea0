"""Compile reports: the error a failed cross-compile raises, the spill policy, and text.

`CompileReport` and `Occupancy` are data-model types (they travel in a Trace under
`evaluation.solforge.compile_reports`), so they live in `solforge.spec.trace`; this
module re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable

from solforge.spec.trace import CompileReport, Occupancy

__all__ = [
    "SPILL_THRESHOLD_BYTES",
    "CompileReport",
    "CrossCompileError",
    "Occupancy",
    "exceeds_spill_threshold",
    "format_reports",
    "reports_for_workload",
    "spill_note",
]

# Spill traffic (store + load bytes, per thread) above which a candidate is penalized in
# selection. PyTorch Inductor skips Triton configs with more than 16 spilled 32-bit
# registers (torch._inductor.config.triton.spill_threshold = 16); 16 x 4 bytes = 64.
SPILL_THRESHOLD_BYTES = 64


class CrossCompileError(Exception):
    """A kernel did not cross-compile for the target, or cannot launch there.

    `kind` says which: "specialize" (the launch could not be captured or specialized),
    "limit" (a launch parameter or resource beyond the target's limits), "compile"
    (Triton, ptxas or nvcc failed), "timeout", "no_kernel" (nothing to compile).
    `message` is the tool's own text, unabridged, its first line the gist; `str(error)`
    is one line naming the kernel, the workload and that line. The harness maps every
    kind to COMPILE_ERROR, with `message` as the log. (An unknown target is the caller's
    mistake, a SpecError from `solforge.hardware.targets.target_by_name`.)
    """

    def __init__(self, kind: str, message: str, kernel: str = "", workload: str = "", target: str = ""):
        self.kind, self.message, self.kernel, self.workload, self.target = kind, message, kernel, workload, target
        super().__init__(self.one_line())

    def one_line(self, limit: int = 400) -> str:
        where = [f"kernel {self.kernel}" if self.kernel else "", f"workload {self.workload}" if self.workload else "",
                 f"target {self.target}" if self.target else ""]  # fmt: skip
        lines = [ln.strip() for ln in self.message.splitlines() if ln.strip()] or ["(no message)"]
        text = lines[0] + (f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else "")
        text = text if len(text) <= limit else text[: limit - 3] + "..."
        head = ", ".join(w for w in where if w)
        return f"{head}: {text}" if head else text

    def __reduce__(self):  # picklable across processes, with its fields
        return (CrossCompileError, (self.kind, self.message, self.kernel, self.workload, self.target))


def exceeds_spill_threshold(report: CompileReport, threshold_bytes: int = SPILL_THRESHOLD_BYTES) -> bool:
    """Whether `report`'s spill traffic (stores + loads, bytes per thread) is above the
    threshold: the search penalizes such a candidate in selection and notes why."""
    return report.spill_bytes > threshold_bytes


def spill_note(reports: Iterable[CompileReport], threshold_bytes: int = SPILL_THRESHOLD_BYTES) -> str | None:
    """One line for the archive naming each kernel that spills above the threshold, or
    None when none does."""
    over = [r for r in reports if exceeds_spill_threshold(r, threshold_bytes)]
    if not over:
        return None
    parts = sorted({f"{r.kernel} ({r.spill_store_bytes} B stored, {r.spill_load_bytes} B loaded, "
                    f"{r.registers_per_thread} registers)" for r in over})  # fmt: skip
    return f"register spills above {threshold_bytes} B on {over[0].target}: " + "; ".join(parts)


def reports_for_workload(reports: Iterable[CompileReport], workload_uuid: str) -> list[CompileReport]:
    """The reports of the kernels `workload_uuid` compiles to (what one Trace carries)."""
    return [r for r in reports if workload_uuid in r.workloads]


def format_reports(reports: list[CompileReport], labels: dict[str, str] | None = None) -> str:
    """Plain text, one block per kernel and specialization: registers, spills, shared
    memory, block size and occupancy with its limiter, ptxas warnings. `labels` maps
    workload uuids to display names."""
    labels = labels or {}
    out = []
    for r in reports:
        occ = r.occupancy
        names = [labels.get(w, w) for w in r.workloads]
        shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        block = f"{r.threads_per_block} threads" if r.threads_per_block else f"best block {occ.threads_per_block}"
        lines = [
            f"{r.kernel} [{r.language}, {r.target}] workloads: {shown or '-'}",
            f"  registers/thread {r.registers_per_thread}, spills {r.spill_store_bytes} B stored / "
            f"{r.spill_load_bytes} B loaded, stack {r.stack_frame_bytes} B",
            f"  shared memory {r.static_shared_memory_bytes} B static + {r.dynamic_shared_memory_bytes} B dynamic; "
            f"{block}, max {r.max_threads_per_block} threads/block"
            + (f"; num_warps={r.num_warps}, num_stages={r.num_stages}" if r.num_warps is not None else ""),
            f"  occupancy {occ.active_warps_per_sm}/{occ.max_warps_per_sm} warps/SM ({occ.fraction:.0%}), "
            f"{occ.blocks_per_sm} blocks/SM, limited by {', '.join(occ.limited_by)}",
        ]
        lines += [f"  ptxas warning: {w}" for w in r.ptxas_warnings]
        if exceeds_spill_threshold(r):
            lines.append(f"  spills above {SPILL_THRESHOLD_BYTES} B: penalized in selection")
        out.append("\n".join(lines))
    return "\n".join(out)
