"""Does tuning the numba RMSNorm seed pay on this CPU? Default parameters vs tuned points.

`make demo` on a CPU-only machine tunes the numba seeds; this script shows that the
parameter space holds real improvements over the defaults on rmsnorm_h4096's smoke
workloads (T = 1, 7, 64 rows of 4096 bfloat16), so that a tune operator has something
to find. It is a CPU smoke figure: the inputs (at most 512 KB) stay in cache, and the
timing is wall-clock `time.perf_counter` around one call, candidates measured in
interleaved rounds so that load from other processes hits them alike.

Bytes per call (compulsory): T * H * 2 read + T * H * 2 written + H * 2 for the weight;
GB/s = bytes / (latency_ms * 1e-3) / 1e9.

    .venv/bin/python benchmarks/knowledge_numba_rmsnorm_tuning.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch

from solforge.knowledge import load_seeds, params_digest
from solforge.problems import load_builtin, select_workloads

SEED = "numba/rmsnorm_rows"
PROBLEM = "rmsnorm_h4096"
# Candidates as data: name -> parameters over the seed's defaults.
CANDIDATES: dict[str, dict] = {
    "default": {},
    "fastmath": {"FASTMATH": True},
    "parallel+accumulators": {"PARALLEL": True, "ACCUMULATORS": 8, "ROWS_PER_CHUNK": 1},
    "parallel+fastmath": {"PARALLEL": True, "FASTMATH": True, "ROWS_PER_CHUNK": 4},
}


def _load(source: str, directory: Path, stem: str):
    path = directory / f"{stem}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed calls per candidate and workload")
    args = parser.parse_args()

    seed = next(s for s in load_seeds("numba") if s.name == SEED)
    definition, workloads = load_builtin(PROBLEM)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, overrides in CANDIDATES.items():
            params = seed.resolve_params(overrides)
            runs[name] = _load(seed.with_params(params), Path(tmp), f"rmsnorm_{params_digest(params)}").run
            print(f"{name:24s} {params}")
        print()
        print(f"{'workload':10s} {'candidate':24s} {'median_ms':>10s} {'iqr_ms':>9s} {'GB/s':>7s} {'speedup':>8s}")
        for workload in select_workloads(workloads, "smoke"):
            axes = definition.resolve_axes(workload.axes)
            rows, hidden = axes["num_tokens"], axes["hidden_size"]
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(rows, hidden, generator=gen).to(torch.bfloat16)  # (T, H)
            w = torch.randn(hidden, generator=gen).to(torch.bfloat16)  # (H,)
            out = torch.empty_like(x)
            bytes_moved = 2 * rows * hidden * 2 + hidden * 2
            samples_ms: dict[str, list[float]] = {name: [] for name in runs}
            for run in runs.values():  # compile and warm up outside the timed rounds
                for _ in range(3):
                    run(hidden_states=x, weight=w, output=out)
            for _ in range(args.rounds):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run(hidden_states=x, weight=w, output=out)
                    samples_ms[name].append((time.perf_counter() - start) * 1e3)
            base_ms = statistics.median(samples_ms["default"])
            for name, samples in samples_ms.items():
                median_ms = statistics.median(samples)
                q1, _, q3 = statistics.quantiles(samples, n=4)
                gb_s = bytes_moved / (median_ms * 1e-3) / 1e9
                print(
                    f"{workload.label:10s} {name:24s} {median_ms:10.4f} {q3 - q1:9.4f} {gb_s:7.2f} "
                    f"{base_ms / median_ms:7.2f}x"
                )


if __name__ == "__main__":
    main()
