"""The speed-of-light (SOL) bound of a workload, and how close a measured latency gets.

The bound is the roofline model as SOL-ExecBench (Lin et al., arXiv:2603.19173) uses it
in its SOLAR analysis:

    T_SOL = max(sum_d tensor_flops[d] / peak(d) + other_flops / simt_peak,
                bytes_moved / dram_bandwidth)

and the score is SOL-ExecBench's, `S = 1 / (1 + (T_k - T_SOL) / (T_b - T_SOL))` for a
kernel time T_k against a baseline time T_b: 0.5 at the baseline, 1 at SOL. A kernel
measured below SOL scores 1, never more, and is an audit finding: either the kernel
skips work or the counts are wrong.

Units: TFLOP/s are 1e12 FLOP/s and GB/s are 1e9 bytes/s, as datasheets print them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from solforge.hardware.datasheet import choose_peaks
from solforge.spec import SolReport

if TYPE_CHECKING:
    from solforge.hardware import Peaks
    from solforge.roofline.counting import Work


class Binding(str, enum.Enum):
    """Which side of the roofline sets the bound."""

    memory = "memory"
    compute = "compute"


@dataclass(frozen=True)
class SolBound:
    """The SOL time of one workload at one set of peaks, with its two sides."""

    time_ms: float  # max(compute_ms, memory_ms)
    compute_ms: float  # tensor-core FLOPs at their dtype's peak plus other FLOPs at the SIMT peak
    memory_ms: float  # compulsory bytes at DRAM bandwidth
    binding: Binding  # compute when compute_ms > memory_ms, else memory


def _positive(value: float, what: str, source: str) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"peaks '{source}': {what} must be a positive number, got {value}")
    return value


def sol_bound(work: Work, peaks: Peaks) -> SolBound:
    """Speed-of-light time of `work` at `peaks`, in milliseconds, with both sides.

    compute_ms = sum over dtypes d of tensor_flops[d] / peaks.tensor_peak_tflops(d)
                 + other_flops / peaks.simt_tflops
    memory_ms  = bytes_moved / peaks.dram_bandwidth_gb_s
    time_ms    = max(compute_ms, memory_ms); a tie counts as memory-bound.

    Source: the roofline model (Williams, Waterman, Patterson, CACM 2009) as
    SOL-ExecBench applies it (tensor and SIMT work add up because they share the issue
    slots of one kernel). Raises ValueError for a peak that is not positive, and
    whatever `Peaks.tensor_peak_tflops` raises for a dtype it has no peak for.
    """
    compute_s = 0.0
    for dtype_name, flops in work.tensor_flops.items():
        if flops:
            tflops = _positive(peaks.tensor_peak_tflops(dtype_name), f"the {dtype_name} tensor peak", peaks.source)
            compute_s += flops / (tflops * 1e12)
    if work.other_flops:
        compute_s += work.other_flops / (_positive(peaks.simt_tflops, "the SIMT peak", peaks.source) * 1e12)
    bandwidth_gb_s = _positive(peaks.dram_bandwidth_gb_s, "the DRAM bandwidth", peaks.source)
    memory_s = work.bytes_moved / (bandwidth_gb_s * 1e9)
    compute_ms, memory_ms = compute_s * 1e3, memory_s * 1e3
    binding = Binding.compute if compute_ms > memory_ms else Binding.memory
    return SolBound(max(compute_ms, memory_ms), compute_ms, memory_ms, binding)


def sol_time_ms(work: Work, peaks: Peaks) -> float:
    """Speed-of-light time of `work` at `peaks`, in milliseconds: `sol_bound(...).time_ms`."""
    return sol_bound(work, peaks).time_ms


def _check_times(**times_ms: float) -> None:
    for name, value in times_ms.items():
        sol = name == "sol_ms"  # an op with no work has a SOL of 0 ms; measured times are never 0
        if not (math.isfinite(value) and (value >= 0 if sol else value > 0)):
            expected = "non-negative" if sol else "positive"
            raise ValueError(f"{name} must be a finite {expected} time in ms, got {value}")


def sol_fraction(latency_ms: float, sol_ms: float) -> float:
    """Fraction of speed of light reached: T_SOL / T_k, capped at 1.0.

    A latency below SOL gives 1.0 (and is an audit finding; `sol_report` records it).
    Raises ValueError unless latency_ms > 0 and sol_ms >= 0, both finite.
    """
    _check_times(latency_ms=latency_ms, sol_ms=sol_ms)
    return min(1.0, sol_ms / latency_ms)


def sol_score(latency_ms: float, baseline_ms: float, sol_ms: float) -> float:
    """SOL-ExecBench's score of a kernel time T_k against a baseline T_b and SOL T_SOL:

        S = 1 / (1 + (T_k - T_SOL) / (T_b - T_SOL))

    0.5 at the baseline, 1 at SOL, tending to 0 as T_k grows; monotone decreasing in
    T_k. Never above 1: a T_k at or below SOL scores 1 (an audit finding). When the
    baseline itself is at or below SOL (T_b <= T_SOL, so the formula's scale is zero or
    negative: the counts, not the kernel, are suspect) the score falls back to the
    SOL fraction T_SOL / T_k, which keeps 1 at SOL, stays in (0, 1] and is monotone,
    rather than dividing by zero or scoring every kernel 0.

    Source: the SOL Score of SOL-ExecBench (Lin et al., NVIDIA, arXiv:2603.19173,
    2026). Raises ValueError unless latency_ms > 0, baseline_ms > 0 and sol_ms >= 0,
    all finite.
    """
    _check_times(latency_ms=latency_ms, baseline_ms=baseline_ms, sol_ms=sol_ms)
    if latency_ms <= sol_ms:
        return 1.0
    if baseline_ms <= sol_ms:
        return sol_fraction(latency_ms, sol_ms)
    return 1.0 / (1.0 + (latency_ms - sol_ms) / (baseline_ms - sol_ms))


def sol_report(
    work: Work,
    latency_ms: float | None,
    baseline_ms: float | None,
    datasheet: Peaks | None,
    calibrated: Peaks | None,
) -> SolReport:
    """The SOL view of one measured latency, as stored on an Evaluation.

    Always filled: the counts (tensor_flops, other_flops, bytes_moved), `sol_time_ms`
    at the datasheet peaks and `sol_time_calibrated_ms` at the calibrated ceilings
    (each None where those peaks are None, e.g. an unknown device).

    The bound used for `binding`, `sol_fraction`, `sol_score` and `audit` is the one
    `hardware.choose_peaks` picks: the calibrated one when calibrated peaks are
    given (what this very device reaches), else the datasheet one. With `latency_ms`
    (the kernel's median, ms): achieved_tflops = total FLOPs / latency, achieved_gb_s =
    compulsory bytes / latency, sol_fraction; with `baseline_ms` too (the eager
    reference's median, ms): sol_score. `audit` is set when the kernel (or the
    baseline) measured below the bound used. A failed run passes `latency_ms=None`:
    then only the counts and bounds are filled.
    """
    datasheet_bound = sol_bound(work, datasheet) if datasheet is not None else None
    calibrated_bound = sol_bound(work, calibrated) if calibrated is not None else None
    which = choose_peaks(datasheet, calibrated).source  # the one rule: calibrated, else datasheet
    used = {"calibrated": calibrated_bound, "datasheet": datasheet_bound, None: None}[which]
    report = SolReport(
        tensor_flops=dict(work.tensor_flops),
        other_flops=work.other_flops,
        bytes_moved=work.bytes_moved,
        sol_time_ms=datasheet_bound.time_ms if datasheet_bound else None,
        sol_time_calibrated_ms=calibrated_bound.time_ms if calibrated_bound else None,
        binding=used.binding.value if used else None,
    )
    if latency_ms is None:
        return report
    _check_times(latency_ms=latency_ms)
    latency_s = latency_ms * 1e-3
    report.achieved_tflops = work.total_flops / latency_s / 1e12
    report.achieved_gb_s = work.bytes_moved / latency_s / 1e9
    if used is None:
        return report
    report.sol_fraction = sol_fraction(latency_ms, used.time_ms)
    if baseline_ms is not None:
        report.sol_score = sol_score(latency_ms, baseline_ms, used.time_ms)
    findings = []
    if latency_ms < used.time_ms:
        findings.append(
            f"measured {latency_ms:.4g} ms, below the SOL bound {used.time_ms:.4g} ms "
            f"({which} peaks): audit the kernel and the counts"
        )
    if baseline_ms is not None and baseline_ms < used.time_ms:
        findings.append(
            f"baseline measured {baseline_ms:.4g} ms, below the SOL bound {used.time_ms:.4g} ms "
            f"({which} peaks): audit the counts"
        )
    report.audit = "; ".join(findings) or None
    return report
