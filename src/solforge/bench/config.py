"""How the harness evaluates: limits, trials, the timing budget and its options.

One `BenchConfig` serves every caller (the CLI, the search, the baselines), so that
baselines and solutions are measured the same way. It travels to the worker process as
JSON, so every field is a plain value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TimingBudget(BaseModel):
    """How long one workload is timed. Timing stops at `max_iters` samples or once the
    timed loop (input regeneration and cache flushes included) has run `max_time_s`,
    whichever comes first, but never before `min_iters` samples."""

    model_config = ConfigDict(frozen=True)

    warmup_s: float = Field(ge=0.0, description="Warm-up, by wall-clock time, in seconds (at least one call).")
    max_time_s: float = Field(gt=0.0, description="Wall-clock budget of the timed loop, in seconds.")
    max_iters: int = Field(ge=1, description="At most this many timed samples.")
    min_iters: int = Field(ge=1, description="At least this many timed samples, whatever the budget.")


# CPU budgets stay small: CI runs on 2 shared cores, and a CPU number is a smoke figure.
# min_iters is timing.MIN_STABLE_SAMPLES: fewer samples are unstable by definition, and
# were re-run once and still unstable: at the CPU search shapes (prefill t=4096, ~0.25 s
# an iteration with the judge's fresh inputs and profiled calls) 3 or 4 samples fitted in
# the second, and 95 of 96 points of a seed's table were unstable for that alone.
CPU_TIMING = TimingBudget(warmup_s=0.05, max_time_s=1.0, max_iters=30, min_iters=5)
# On a GPU each sample costs an L2 flush plus the call; 200 samples of a 10 us kernel
# take well under a second, and the median of 200 is stable to a few percent.
CUDA_TIMING = TimingBudget(warmup_s=0.05, max_time_s=1.0, max_iters=200, min_iters=10)


class BenchConfig(BaseModel):
    """Options of one evaluation. The defaults are what `solforge bench` uses."""

    model_config = ConfigDict(frozen=True)

    device: str = Field(default="cpu", description="'cpu', 'cuda' or 'cuda:N'; evaluate()'s device argument wins.")
    timeout_s: float = Field(
        default=300.0,
        gt=0.0,
        description="Hard wall-clock limit, in seconds, of one request that calls the solution: the "
        "correctness trials of one workload, or its timing run (which gets this plus the timing budget). "
        "Generous: an honest kernel never meets it, a hang costs this much.",
    )
    startup_timeout_s: float = Field(default=120.0, gt=0.0, description="Limit for a worker to start, in seconds.")
    build_timeout_s: float = Field(
        default=600.0, gt=0.0, description="Limit for building one solution (a CUDA C++ build takes a minute), s."
    )
    trials: int = Field(default=3, ge=3, description="Correctness trials per workload, each with fresh inputs.")
    timing: TimingBudget | None = Field(default=None, description="None: CPU_TIMING or CUDA_TIMING by device.")
    rerun_unstable: bool = Field(
        default=True,
        description="On the host timer, time a workload once more when its first timing is unstable "
        "(timing.is_stable), and mark it unstable only if the second is too. The screening budget does not: its "
        "figure only says whether a candidate could be a new best, and the search re-times a would-be best with the "
        "full budget whatever its stability.",
    )
    timing_checks: int = Field(default=2, ge=0, description="Timed iterations whose outputs are checked, per workload.")
    cuda_graph: bool = Field(default=False, description="Time CUDA-graph replays (for launch-bound kernels).")
    lock_clocks: bool = Field(
        default=False, description="Lock the SM clock through NVML while timing (needs root); never on by default."
    )
    flush_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Size of the cache-flush buffer, bytes. None: 2x the L2 (GPU) or last-level cache (CPU).",
    )
    judge_threads: int | None = Field(
        default=1, ge=1,
        description="torch intra-op threads of the judge's own work while it times on the CPU (timing.judge_threads). "
        "None: the caller's setting, which on more than one thread takes CPU from the timed calls.",
    )
    go_wait: Literal["auto", "spin", "wake"] = Field(
        default="auto",
        description="How the solution's process waits for GO in a CPU timing (solforge.bench.handshake): 'auto' by "
        "timing.wake_for (asleep when its threads fill the CPUs), or always 'spin' or 'wake'.",
    )
    seed: int = Field(default=0, ge=0, description="Base seed of every input; trials and iterations offset it.")
    dataset_root: Path | None = Field(default=None, description="Root that safetensors input paths are relative to.")
    memory_limit_gb: float | None = Field(
        default=None, gt=0.0,
        description="Host memory a solution's process may use, GiB: past it, the kernel's out-of-memory killer "
        "ends that process (a memory cgroup; RLIMIT_AS where none can be made). None: no limit.",
    )
    target: str | None = Field(
        default=None,
        description="GPU target ('sm_90a', 'sm_100a', 'sm_80') every Triton or CUDA C++ solution is cross-compiled "
        "for before it runs (COMPILE_ERROR with ptxas' or nvcc's message, compile reports in the trace). None: the "
        "target of the CUDA device evaluated on, and no cross-compile on other devices.",
    )
    compile_cache_dir: str | None = Field(
        default=None,
        description="Directory of the compilers' caches (numba, Triton), one subdirectory per solution named by its "
        "sources' hash, reused by later evaluations of the same sources in this run or another (`compile_cache`). "
        "None: numba compiles every evaluation afresh, and Triton uses TRITON_CACHE_DIR or its default.",
    )
    build_ahead: bool = Field(
        default=False,
        description="On the CPU, outside the sandbox: build each untrusted solution (its import, and one untimed call "
        "that makes numba compile) outside the device lock, while another evaluation in this process is judged; "
        "stopped (SIGSTOP) in every timed section (`judge.run_judged`). `solforge evolve` turns it on for its "
        "concurrent evaluations. The untimed call is not judged: a wrong answer on a process's first call only "
        "goes unseen.",
    )
    sandbox: bool = Field(
        default=False,
        description="Run each solution's process under bubblewrap: no network, read-only root, its own PID "
        "namespace, only its working directory writable (costs a full process start per solution).",
    )

    def timing_for(self, device: str) -> TimingBudget:
        """The timing budget on `device`: the configured one, else the device's default."""
        if self.timing is not None:
            return self.timing
        return CPU_TIMING if device == "cpu" else CUDA_TIMING

    def screening(self, device: str) -> BenchConfig:
        """This config with the screening budget on `device` (`screening_budget`), and no
        second timing of an unstable figure (`rerun_unstable`)."""
        return self.model_copy(update={"timing": screening_budget(self.timing_for(device)), "rerun_unstable": False})


SCREENING_SHARE = 3  # a screening timing gets a third of the full budget's samples and time


def screening_budget(full: TimingBudget) -> TimingBudget:
    """The budget of a search's first timing of a candidate (`solforge evolve`, unless
    `--no-cut`): a third of `full`'s samples and time, never fewer than its `min_iters`
    samples. A first figure only has to say whether the candidate could be a new best;
    a would-be new best is then re-timed with the full budget before it is accepted
    (`search.controller`), as Helion's autotuner re-benchmarks its top configurations
    at more repetitions before choosing."""
    max_iters = max(full.min_iters, full.max_iters // SCREENING_SHARE)
    return full.model_copy(update={"max_iters": max_iters, "max_time_s": full.max_time_s / SCREENING_SHARE})
