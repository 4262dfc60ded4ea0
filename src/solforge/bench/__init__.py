"""The harness: build a solution, check it, time it, and guard against reward hacks.

- `evaluate(definition, workloads, solution, device, config) -> list[Trace]`
- `run_bench(definition, workloads, solutions, device, baselines, config) -> BenchResult`:
  the eager and torch.compile baselines first, then the solutions, with SOL reports.
- `BenchConfig` (limits, trials, timing budget, options), `TimingBudget`.
- `solution_from_py(path, definition, language)`: a `.py` file with `run` as a Solution.
- `make_inputs`, `generate`: the inputs of a workload (see `inputs`).
- `baseline_latencies`, `attach_sol`: SOL reports and speedups against baselines
  measured once (what a search does with each candidate's traces).

Module map: `config` (options), `inputs` (input generation), `build` (per language),
`worker` (the isolated process and its limits), `session` (what the worker does with a
request), `correctness` (the trial protocol and tolerances), `timing` (the one timing
method), `evaluate` (traces and baselines), `sol` (SOL reports on traces), `guards`
(reward-hack guards).
torch is imported only inside functions, so importing this package stays light.
"""

from __future__ import annotations

from solforge.bench.build import solution_from_py
from solforge.bench.config import BenchConfig, TimingBudget
from solforge.bench.evaluate import BenchResult, evaluate, run_bench
from solforge.bench.inputs import DISTRIBUTIONS, generate, make_inputs
from solforge.bench.sol import attach_sol, baseline_latencies, detect_device

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
