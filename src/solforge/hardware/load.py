"""The load a measurement ran under: how busy other processes kept this process's CPUs.

`watch_load()` reads, before and after the block it wraps, the busy and total time of the
CPUs this process may run on (Linux `/proc/stat`, per-CPU lines, in clock ticks) and this
process's own CPU time (`os.times()`, all its threads). What the CPUs were busy with
beyond this process is the other processes' share:

    other_cpu_fraction = (busy ticks - own CPU seconds x ticks per second) / total ticks

(busy = user + nice + system + irq + softirq + steal; total adds idle + iowait; steal
counts as busy, since a hypervisor that gave the CPU to another guest took it from us).
Child processes count as other processes. The 1-minute load average per CPU
(`os.getloadavg()`) at the start is recorded beside it, and decides only where
`/proc/stat` cannot be read (it counts this process's own recent work too). Other
processes on CPUs outside this process's affinity are not watched, though they share
the memory bus; a cgroup CPU quota is not seen.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

PROC_STAT = Path("/proc/stat")

# A run is under load when other processes kept more than 10% of the watched CPUs busy
# (a tenth of the cores gone shows in a bandwidth or matmul ceiling), or, without
# /proc/stat, when the load average at the start exceeded half a runnable task per CPU.
MAX_OTHER_CPU_FRACTION = 0.10
MAX_LOADAVG_PER_CPU = 0.5


class LoadReading(BaseModel):
    """The load one measurement ran under."""

    cpus: int = Field(ge=1, description="CPUs watched: those this process may run on.")
    wall_s: float = Field(ge=0, description="Wall-clock seconds of the measurement.")
    other_cpu_fraction: float | None = Field(
        default=None, ge=0, le=1,
        description="Share of the watched CPUs' time other processes kept busy; None without /proc/stat.",
    )
    loadavg_1m_per_cpu: float | None = Field(
        default=None, ge=0, description="1-minute load average / cpus, at the start.")
    under_load: bool

    def summary(self) -> str:
        """One line: what was read, and whether it counts as load."""
        parts = []
        if self.other_cpu_fraction is not None:
            parts.append(f"other processes used {self.other_cpu_fraction:.0%} of {self.cpus} CPU(s)")
        if self.loadavg_1m_per_cpu is not None:
            parts.append(f"load average {self.loadavg_1m_per_cpu:.2f} per CPU at the start")
        verdict = "under load" if self.under_load else "clean"
        return f"{verdict} ({', '.join(parts) or 'no load figures on this system'}; {self.wall_s:.1f} s)"


def watched_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), else all of them."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpu_ticks(stat_text: str, cpus: Iterable[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks of `cpus` summed from the per-CPU lines of a `/proc/stat` text.

    None when a CPU's line is missing or malformed. Fields: user nice system idle iowait
    irq softirq steal (guest time is already inside user; source: proc(5), /proc/stat).
    """
    lines = {}
    for line in stat_text.splitlines():
        head, _, rest = line.partition(" ")
        if head.startswith("cpu") and head[3:].isdigit():
            lines[int(head[3:])] = rest.split()
    busy = total = 0
    for cpu in cpus:
        fields = lines.get(cpu)
        if fields is None or len(fields) < 4:
            return None
        try:
            values = [int(v) for v in fields[:8]] + [0] * (8 - min(len(fields), 8))
        except ValueError:
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = values
        cpu_busy = user + nice + system + irq + softirq + steal
        busy += cpu_busy
        total += cpu_busy + idle + iowait
    return busy, total


def judge_load(other_cpu_fraction: float | None, loadavg_1m_per_cpu: float | None, *, have_cpu_ticks: bool) -> bool:
    """Whether these figures mean the measurement ran under load (thresholds in the module constants).

    With CPU ticks readable, only `other_cpu_fraction` decides (None: a window shorter than
    one tick, nothing seen); the load average, which counts this process's own recent
    work too, decides only on a system without /proc/stat.
    """
    if have_cpu_ticks:
        return other_cpu_fraction is not None and other_cpu_fraction > MAX_OTHER_CPU_FRACTION
    return loadavg_1m_per_cpu is not None and loadavg_1m_per_cpu > MAX_LOADAVG_PER_CPU


class LoadWatch:
    """What `watch_load` yields; `reading` is set when the block ends (also when it raises)."""

    reading: LoadReading | None = None


@contextlib.contextmanager
def watch_load(stat_path: Path = PROC_STAT) -> Iterator[LoadWatch]:
    """Watch the load of this process's CPUs for the duration of the block; see the module docstring."""
    cpus = watched_cpus()
    watch = LoadWatch()
    try:
        loadavg = os.getloadavg()[0] / len(cpus)
    except (AttributeError, OSError):
        loadavg = None
    before, own_before, start = _read(stat_path, cpus), _own_cpu_s(), time.perf_counter()
    try:
        yield watch
    finally:
        after, own_after, wall_s = _read(stat_path, cpus), _own_cpu_s(), time.perf_counter() - start
        other = None
        if before is not None and after is not None and after[1] > before[1]:
            ticks_per_s = os.sysconf("SC_CLK_TCK")
            busy, total = after[0] - before[0], after[1] - before[1]
            own_ticks = (own_after - own_before) * ticks_per_s
            other = min(1.0, max(0.0, (busy - own_ticks) / total))
        have_ticks = before is not None and after is not None
        watch.reading = LoadReading(cpus=len(cpus), wall_s=wall_s, other_cpu_fraction=other,
                                    loadavg_1m_per_cpu=loadavg,
                                    under_load=judge_load(other, loadavg, have_cpu_ticks=have_ticks))


def _read(stat_path: Path, cpus: list[int]) -> tuple[int, int] | None:
    try:
        return cpu_ticks(stat_path.read_text(), cpus)
    except OSError:
        return None


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system
