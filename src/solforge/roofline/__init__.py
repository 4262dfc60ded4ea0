"""The roofline: what a workload must do (FLOPs by kind, compulsory bytes) and the
speed-of-light time, score and fraction that follow from it.

`sol` (bounds and scores) is pure arithmetic; `counting` runs references under torch,
so its names are imported on first use, to keep `import solforge.roofline` free of
torch for callers that only score. `attach` puts SOL reports and speedups on measured
traces (`attach_sol`, at a `Device`'s peaks); `summary` gives the SOL bound of each
workload on a `Device` before anything is measured (`sol_summary`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from solforge.roofline.attach import attach_sol, baseline_latencies, measured_latency_ms, work_of
from solforge.roofline.sol import Binding, SolBound, sol_bound, sol_fraction, sol_report, sol_score, sol_time_ms
from solforge.roofline.summary import SolSummary, sol_summary

if TYPE_CHECKING:
    from solforge.roofline.counting import Work, compulsory_bytes, count_work

_LAZY = {"Work", "count_work", "compulsory_bytes"}


def __getattr__(name: str):
    if name in _LAZY:
        from solforge.roofline import counting

        return getattr(counting, name)
    raise AttributeError(f"module 'solforge.roofline' has no attribute '{name}'")


__all__ = [
    "Binding",
    "SolBound",
    "SolSummary",
    "Work",
    "attach_sol",
    "baseline_latencies",
    "compulsory_bytes",
    "count_work",
    "measured_latency_ms",
    "sol_bound",
    "sol_fraction",
    "sol_report",
    "sol_score",
    "sol_summary",
    "sol_time_ms",
    "work_of",
]
