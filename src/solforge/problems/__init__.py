"""The built-in problems: FlashInfer-Trace definitions and workloads of Llama-3.1-8B's
kernels (norms, activations, RoPE, GEMMs, attention), shipped as a dataset directory.

    from solforge.problems import DEFAULT_PROBLEM, load_builtin, select_workloads
    definition, workloads = load_builtin(DEFAULT_PROBLEM)
    search = select_workloads(workloads, "search")

docs/problems.md tables the definitions: model, forbidden calls, tolerances and why.
"""

from __future__ import annotations

from solforge.problems.registry import (
    WORKLOAD_SELECTIONS,
    builtin_dataset,
    builtin_names,
    builtin_root,
    load_builtin,
    select_workloads,
)

DEFAULT_PROBLEM = "rmsnorm_h4096"  # one memory-bound pass over the rows: the simplest first target

__all__ = [
    "DEFAULT_PROBLEM",
    "WORKLOAD_SELECTIONS",
    "builtin_dataset",
    "builtin_names",
    "builtin_root",
    "load_builtin",
    "select_workloads",
]
