"""The roofline: what a workload must do (FLOPs by kind, compulsory bytes) and the
speed-of-light time, score and fraction that follow from it.

`sol` (bounds and scores) is pure arithmetic; `counting` runs references under torch,
so its names are imported on first use, to keep `import solforge.roofline` free of
torch for callers that only score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from solforge.roofline.sol import Binding, SolBound, sol_bound, sol_fraction, sol_report, sol_score, sol_time_ms

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
    "Work",
    "compulsory_bytes",
    "count_work",
    "sol_bound",
    "sol_fraction",
    "sol_report",
    "sol_score",
    "sol_time_ms",
]
