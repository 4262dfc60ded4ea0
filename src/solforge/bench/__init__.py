"""The harness: build a solution, check it, time it, and guard against reward hacks.

- `evaluate(definition, workloads, solution, device, config, cutoff_ms=None) -> list[Trace]`
- `run_bench(definition, workloads, solutions, device, baselines, config, on_trace=None) -> BenchResult`:
  the eager and torch.compile baselines first, then the solutions, with SOL reports.
- `BenchConfig` (limits, trials, timing budget, options), `TimingBudget`.
- `solution_from_py(path, definition, language)`: a `.py` file with `run` as a Solution.
- `make_inputs`, `generate`: the inputs of a workload (see `inputs`).
- `baseline_latencies`, `attach_sol`: SOL reports and speedups against baselines
  measured once (they live in `solforge.roofline`; re-exported here).

Module map, by role. The judge (the caller's process): `evaluate` (traces, baselines),
`judge` (every verdict: correctness calls, timing, the checks after the loop),
`correctness` (the comparison and the reference's precision), `timing` (the one timing
method, both sides), `handshake` (the timed CPU handshake, both sides), `arena` (shared
memory), `cpu_flush` (cache-line eviction), `limits` (memory cgroups), `messages` (typed
requests and replies), `processes` (starting, tying and killing children). The children:
`template` (the process they fork from), `child` (their entry point), `solution_process`,
`reference_process`. Per language: `languages` (plugins), `build`, `crosscompile`.
Guards: `guards` (static, recorder, audit, watch, integrity, launches, outputs).
torch is imported only inside functions, so importing this package stays light.
"""

from __future__ import annotations

from solforge.bench.build import solution_from_py
from solforge.bench.config import BenchConfig, TimingBudget
from solforge.bench.evaluate import BenchResult, evaluate, run_bench
from solforge.bench.inputs import DISTRIBUTIONS, generate, make_inputs
from solforge.hardware import Device
from solforge.roofline import attach_sol, baseline_latencies

detect_device = Device.parse  # the device behind a device string, parsed once per process

__all__ = [
    "DISTRIBUTIONS",
    "BenchConfig",
    "BenchResult",
    "TimingBudget",
    "attach_sol",
    "baseline_latencies",
    "detect_device",
    "evaluate",
    "generate",
    "make_inputs",
    "run_bench",
    "solution_from_py",
]
