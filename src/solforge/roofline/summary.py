"""The SOL bound of each workload on one device, before anything is measured (what an agent is told).

The bound is `sol_bound(count_work(definition, workload), peaks)` at the peaks
`Device.peaks` picks: max(FLOPs / peak FLOP/s, compulsory bytes / DRAM bandwidth), the
roofline model (Williams, Waterman & Patterson, CACM 2009) as SOL-ExecBench applies it,
at the calibrated ceilings when measured, else the datasheet peaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from solforge.roofline.attach import work_of
from solforge.roofline.sol import SolBound, sol_bound
from solforge.spec import Definition, Workload

if TYPE_CHECKING:
    from solforge.hardware import Device


@dataclass
class SolSummary:
    """SOL bounds of some workloads on one device, or why there are none."""

    device_name: str
    peaks_source: str | None  # "calibrated" or "datasheet"; None when no bound is available
    bounds: dict[str, SolBound] = field(default_factory=dict)  # workload uuid -> bound
    note: str = ""  # why a bound is missing, or how the device was matched

    def sol_ms(self, uuid: str) -> float | None:
        """The SOL time of workload `uuid`, in ms; None when it has no bound."""
        bound = self.bounds.get(uuid)
        return bound.time_ms if bound is not None else None


def sol_summary(definition: Definition, workloads: Sequence[Workload], device: Device) -> SolSummary:
    """The SOL bound of each of `workloads` on `device`, in ms (see the module docstring).

    Every workload given is bounded: a caller that must hide held-out workloads filters
    them first. Never raises: missing peaks, or work that cannot be counted, leave the
    bound out, with the reason in `note`.
    """
    peaks = device.peaks
    if peaks.used is None:
        return SolSummary(device.name, None, note=f"no SOL bound on this device: {device.reason}")
    summary = SolSummary(device.name, peaks.source, note=f"{device.reason}; SOL at {peaks.reason}")
    for workload in workloads:
        work = work_of(definition, workload)
        if isinstance(work, str):
            summary.note += f"; no bound for {workload.label}: {work}"
            continue
        try:
            summary.bounds[workload.uuid] = sol_bound(work, peaks.used)
        except ValueError as exc:  # a peak that is not positive
            summary.note += f"; no bound for {workload.label}: {exc}"
    return summary
