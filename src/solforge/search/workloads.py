"""Which workloads a search is judged on: on a GPU the definition's search workloads; on
the CPU, shapes where the CPU's own speed shows, chosen by rule from the definition's
workloads (never a hand-written list).

Why. The CPU smoke workloads (an RMSNorm of 1, 7 or 64 rows of 4096) take a few
microseconds at the CPU's speed of light against a call overhead of about 0.1-0.2 ms:
a search on them ranks the overhead, not the kernels. They stay for CI (`--workloads
smoke`). `--workloads auto` (the default) takes, from the definition's workloads that
are neither held-out nor smoke:

1. those whose compulsory bytes (each input read once, each output written once,
   `roofline.count_work`) fit the memory cap `max_bytes` (default 64 MiB: the harness
   keeps a ring of input buffers and a cache flush of twice the last-level cache beside
   them, on a machine shared with others);
2. whose SOL time on this CPU (`roofline.sol_bound` at `Device.peaks`, calibrated when
   measured) is at most the time cap `max_sol_ms` (default 5 ms: a kernel ten times
   slower than SOL still times 30 samples in well under the harness's 1 s budget) and at
   least `min_sol_ms` (default 0.05 ms, a fraction of the call overhead floor below which
   the overhead is what gets measured);
3. at most `max_workloads` (default 3) of those, spread over the size range: the
   smallest and the largest by bytes, then those closest (in log bytes) to the
   geometric middle of what is already chosen.
When no workload qualifies (a definition with only smoke workloads, or a device whose
peaks are unknown) the smoke selection is used, and `WorkloadChoice.note` says why.

`given` (on any device) searches every workload passed that is neither held-out nor
smoke, uncapped, and gates on the held-out ones passed: for a caller that already knows
the shapes that matter (`solforge optimize`: the shapes the profiled model runs, which are
what its kernels will be called on, call overhead included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from solforge.problems import split_workloads
from solforge.spec import Definition, Workload

MAX_BYTES = 64 << 20  # memory cap per workload: compulsory bytes, see the module docstring
MAX_SOL_MS = 5.0  # time cap: SOL time on this CPU, ms
MIN_SOL_MS = 0.05  # below this the call overhead is what gets timed, ms
MAX_WORKLOADS = 3
SELECTIONS = ("auto", "smoke", "given")


@dataclass
class WorkloadChoice:
    """The workloads of one search and why they were chosen."""

    search: list[Workload]
    held_out: list[Workload]
    rule: str  # "cpu caps", "smoke" or "device" (the definition's own search selection)
    note: str = ""  # e.g. why the caps chose nothing
    sol_ms: dict[str, float] = field(default_factory=dict)  # workload uuid -> SOL time used for the choice, ms


def _sol_ms(definition: Definition, workload: Workload, device: str) -> tuple[int, float | None]:
    from solforge.hardware import Device
    from solforge.roofline import sol_bound
    from solforge.roofline.attach import work_of

    work = work_of(definition, workload)
    if isinstance(work, str):
        return -1, None
    peaks = Device.parse(device).peaks
    used = peaks.calibrated or peaks.datasheet
    return work.bytes_moved, (sol_bound(work, used).time_ms if used is not None else None)


def spread(sizes: dict[str, int], k: int) -> list[str]:
    """Up to `k` keys of `sizes` (key -> size > 0) spread over the range: the smallest, the
    largest, then repeatedly the one whose log size is closest to the geometric mean of
    the two chosen neighbours farthest apart. Returned smallest first."""
    order = sorted(sizes, key=lambda u: (sizes[u], u))
    if len(order) <= k:
        return order
    chosen = [order[0], order[-1]][:k]
    while len(chosen) < k:
        ranked = sorted(chosen, key=lambda u: sizes[u])
        gaps = [(math.log(sizes[b]) - math.log(sizes[a]), a, b) for a, b in zip(ranked, ranked[1:])]
        _, a, b = max(gaps)
        middle = (math.log(sizes[a]) + math.log(sizes[b])) / 2
        rest = [u for u in order if u not in chosen]
        chosen.append(min(rest, key=lambda u: (abs(math.log(sizes[u]) - middle), -sizes[u])))
    return sorted(chosen, key=lambda u: (sizes[u], u))


def choose_workloads(definition: Definition, workloads: list[Workload], device: str, selection: str = "auto",
                     max_bytes: int = MAX_BYTES, max_sol_ms: float = MAX_SOL_MS, min_sol_ms: float = MIN_SOL_MS,
                     max_workloads: int = MAX_WORKLOADS) -> WorkloadChoice:  # fmt: skip
    """The search and held-out workloads of a search on `device`; see the module docstring.
    The held-out ones are `problems.split_workloads`'s (`given`: every held-out one passed).
    Raises ValueError for an unknown `selection`, or `given` without a workload to search."""
    if selection not in SELECTIONS:
        raise ValueError(f"workload selection '{selection}': expected one of {', '.join(SELECTIONS)}")
    if selection == "given":
        search = [w for w in workloads if not w.held_out and not w.smoke]
        if not search:
            raise ValueError("workload selection 'given': no workload that is neither held-out nor smoke")
        return WorkloadChoice(search, [w for w in workloads if w.held_out], "given")
    split = split_workloads(workloads, device)
    if device.split(":")[0] != "cpu":
        return WorkloadChoice(split.search, split.held_out, "device")
    if selection == "smoke":
        return WorkloadChoice(split.search, split.held_out, "smoke")
    pool = [w for w in workloads if not w.held_out and not w.smoke]
    sizes, sols, why_not = {}, {}, []
    for w in pool:
        nbytes, sol = _sol_ms(definition, w, device)
        if nbytes <= 0 or sol is None:
            why_not.append(f"{w.label}: no SOL bound")
        elif nbytes > max_bytes:
            why_not.append(f"{w.label}: {nbytes / 2**20:.0f} MiB > {max_bytes / 2**20:.0f} MiB")
        elif not min_sol_ms <= sol <= max_sol_ms:
            why_not.append(f"{w.label}: SOL {sol:.3g} ms outside [{min_sol_ms:g}, {max_sol_ms:g}] ms")
        else:
            sizes[w.uuid], sols[w.uuid] = nbytes, sol
    if not sizes:
        note = ("no workload within the CPU caps" + (f" ({'; '.join(why_not[:4])})" if why_not else
                                                      " (the definition has only smoke workloads)"))
        return WorkloadChoice(split.search, split.held_out, "smoke", note + ": searching the smoke workloads")
    keep = set(spread(sizes, max_workloads))
    chosen = [w for w in sorted(pool, key=lambda w: sizes.get(w.uuid, 0)) if w.uuid in keep]
    return WorkloadChoice(chosen, split.held_out, "cpu caps", sol_ms={u: sols[u] for u in keep})
