"""The built-in problems: 65 FlashInfer-Trace definitions and their workloads, with shapes
from the published configs of Llama-3.1-8B/70B, Qwen2.5-7B/72B, Mixtral-8x7B,
DeepSeek-V3, Gemma-2, Mamba-2, SDXL, ViT-B/16, Whisper and GPT-2 (norms, activations,
softmax, cross-entropy, RoPE, embedding, quantization, GEMM in bf16 and fp8, grouped
GEMM and routing for MoE, attention and MLA, conv2d, the SSD scan, sampling, and
backward passes), shipped as a dataset directory.

    from solforge.problems import DEFAULT_PROBLEM, load_builtin, select_workloads, split_workloads
    definition, workloads = load_builtin(DEFAULT_PROBLEM)
    search = select_workloads(workloads, "search")
    split = split_workloads(workloads, "cpu")   # what a search on the CPU sees, and its gate

docs/problems.md tables the definitions: model, forbidden calls, tolerances and why.
"""

from __future__ import annotations

from solforge.problems.registry import (
    WORKLOAD_SELECTIONS,
    WorkloadSplit,
    builtin_dataset,
    builtin_names,
    builtin_root,
    default_selection,
    load_builtin,
    load_problem,
    resolve_problem,
    select_workloads,
    split_workloads,
)

DEFAULT_PROBLEM = "rmsnorm_h4096"  # one memory-bound pass over the rows: the simplest first target

__all__ = [
    "DEFAULT_PROBLEM",
    "WORKLOAD_SELECTIONS",
    "WorkloadSplit",
    "builtin_dataset",
    "builtin_names",
    "builtin_root",
    "default_selection",
    "load_builtin",
    "load_problem",
    "resolve_problem",
    "select_workloads",
    "split_workloads",
]
