"""Trace: one evaluation of a solution on a workload, as FlashInfer Trace writes it.

solforge's additions (the SOL bound and score, timing statistics, guard findings,
clock readings) go under `evaluation.solforge`, which other readers ignore.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from solforge.spec.workload import Workload


class EvaluationStatus(str, enum.Enum):
    PASSED = "PASSED"
    INCORRECT_SHAPE = "INCORRECT_SHAPE"
    INCORRECT_DTYPE = "INCORRECT_DTYPE"
    INCORRECT_NUMERICAL = "INCORRECT_NUMERICAL"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    COMPILE_ERROR = "COMPILE_ERROR"
    TIMEOUT = "TIMEOUT"
    REWARD_HACK = "REWARD_HACK"


class Correctness(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")

    max_absolute_error: float = 0.0
    max_relative_error: float = 0.0
    extra: dict | None = None


class Performance(BaseModel):
    latency_ms: float = Field(ge=0.0, description="Median latency, in milliseconds.")
    reference_latency_ms: float = Field(default=0.0, ge=0.0, description="Median latency of the eager reference, ms.")
    speedup_factor: float = Field(default=0.0, ge=0.0, description="reference_latency_ms / latency_ms.")


class Environment(BaseModel):
    hardware: str = Field(min_length=1)
    libs: dict[str, str] = Field(default_factory=dict)


class TimingStats(BaseModel):
    """Timing of one solution on one workload; every sample is kept, unrounded."""

    method: str = Field(description="e.g. 'cuda-events+l2-flush', 'cuda-graph', 'perf_counter+cache-flush'.")
    median_ms: float
    iqr_ms: float
    min_ms: float
    count: int
    samples_ms: list[float] = Field(default_factory=list)
    is_performance_measurement: bool = Field(
        default=True, description="False under the Triton interpreter: the time is not the kernel's."
    )
    timed_by: str | None = Field(
        default=None, description="'judge' (the judge's clock around a handshake, CPU) or 'solution-events' (GPU)."
    )
    overhead_ms: float | None = Field(
        default=None, description="The bare handshake's median, ms, subtracted from each raw sample (CPU)."
    )
    raw_samples_ms: list[float] = Field(default_factory=list, description="The judge's samples before subtraction.")
    solution_samples_ms: list[float] = Field(
        default_factory=list, description="The solution process's own readings: untrusted, for comparison only."
    )
    unstable: bool = Field(
        default=False, description="Too few samples or too wide a spread, even after a re-run: not a sound figure."
    )
    reruns: int = Field(default=0, description="Times the timing was run again for an unstable spread.")
    cut: bool = Field(
        default=False, description="Timing stopped early: its median was already past the caller's cut-off."
    )
    flushed_bytes_per_call: int | None = Field(
        default=None, description="Bytes the cache flush evicted or wrote before each timed call (CPU)."
    )
    run_queue_wait_ms: list[float | None] = Field(
        default_factory=list,
        description="Per timed call, same order as samples_ms: how long the solution's threads waited, runnable, "
                    "for a CPU during it (Linux schedstat, summed over threads; None where unreadable; CPU).",
    )
    contended_calls: int = Field(
        default=0, description="Timed calls whose threads waited for a CPU over a quarter of the call and 1 ms (CPU)."
    )
    go_wait: str | None = Field(
        default=None,
        description="How the solution's process waited for the judge's GO (CPU): 'spin' on a shared word, or 'wake' "
                    "asleep until a datagram, for a solution whose threads fill the CPUs (solforge.bench.handshake).",
    )


class GuardFinding(BaseModel):
    """A reward hack the harness caught: which guard, and what it saw."""

    guard: str
    message: str


class SolReport(BaseModel):
    """The speed-of-light view of one measured latency."""

    tensor_flops: dict[str, int] = Field(default_factory=dict)
    other_flops: int = 0
    bytes_moved: int = 0
    sol_time_ms: float | None = Field(default=None, description="At datasheet peaks; None for an unknown device.")
    sol_time_calibrated_ms: float | None = Field(default=None, description="At calibrated ceilings, if measured.")
    binding: Literal["memory", "compute"] | None = None
    sol_fraction: float | None = Field(default=None, description="T_SOL / T_k, with the best SOL available.")
    sol_score: float | None = Field(default=None, description="SOL-ExecBench score vs the eager baseline.")
    achieved_tflops: float | None = None
    achieved_gb_s: float | None = None
    audit: str | None = Field(default=None, description="Set when the measured time beat SOL.")


OccupancyLimiter = Literal["registers", "shared_memory", "threads", "blocks", "barriers"]


class Occupancy(BaseModel):
    """Theoretical occupancy of one compiled kernel on one target, by the rules of the CUDA
    occupancy calculator (`solforge.bench.crosscompile.occupancy` cites each one)."""

    threads_per_block: int = Field(ge=0, description="The block size it was computed for.")
    block_size_basis: Literal["launch", "best"] = Field(
        description="'launch': the kernel's own block size (Triton's num_warps x 32); 'best': the block size "
        "with the highest occupancy, for CUDA C++ whose launch the compiler does not see."
    )
    blocks_per_sm: int = Field(ge=0, description="Resident blocks per SM; 0: the block cannot launch.")
    active_warps_per_sm: int = Field(ge=0)
    max_warps_per_sm: int = Field(gt=0)
    fraction: float = Field(ge=0.0, le=1.0, description="active_warps_per_sm / max_warps_per_sm.")
    limited_by: list[OccupancyLimiter] = Field(description="The resources whose limit equals blocks_per_sm.")
    blocks_limit: dict[str, int] = Field(description="Resident blocks per SM each resource allows.")


class CompileReport(BaseModel):
    """One kernel cross-compiled for one target (ptxas -v), at one specialization."""

    kernel: str = Field(min_length=1, description="The kernel's name (demangled for CUDA C++).")
    target: str = Field(description="e.g. 'sm_90a'.")
    language: Literal["triton", "cuda"]
    workloads: list[str] = Field(default_factory=list, description="uuids of the workloads compiled to this.")
    specialization: str = Field(default="", description="Triton: argument types, divisibility and constexprs.")
    registers_per_thread: int = Field(ge=0)
    spill_store_bytes: int = Field(ge=0)
    spill_load_bytes: int = Field(ge=0)
    stack_frame_bytes: int = Field(ge=0)
    static_shared_memory_bytes: int = Field(ge=0)
    dynamic_shared_memory_bytes: int = Field(ge=0, description="Triton's metadata.shared; 0 for CUDA C++.")
    barriers: int = Field(ge=0)
    num_warps: int | None = None
    num_stages: int | None = None
    threads_per_block: int | None = Field(default=None, description="The launch's block size, when known.")
    max_threads_per_block: int = Field(ge=0, description="The largest block the registers allow on the target.")
    occupancy: Occupancy
    ptxas_warnings: list[str] = Field(default_factory=list)

    @property
    def spill_bytes(self) -> int:
        return self.spill_store_bytes + self.spill_load_bytes


class EvaluationExtension(BaseModel):
    """solforge's fields on an Evaluation, under the `solforge` key."""

    device: str = "cpu"
    timing: TimingStats | None = None
    sol: SolReport | None = None
    baseline_latency_ms: dict[str, float] = Field(default_factory=dict, description="e.g. {'eager': .., 'compile': ..}")
    speedup_vs_compile: float | None = None
    guard_findings: list[GuardFinding] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    clocks: dict[str, float | int | str | None] = Field(default_factory=dict)
    correctness_trials: int = 0
    reference_precision: str | None = None
    held_out: bool = False
    skipped: str | None = Field(default=None, description="Why the workload was not run (e.g. 'memory').")
    compile_reports: list[CompileReport] | None = Field(
        default=None, description="The kernels cross-compiled for the target before any GPU time; None: not compiled."
    )


class Evaluation(BaseModel):
    status: EvaluationStatus
    environment: Environment
    timestamp: str
    log: str = ""
    correctness: Correctness | None = None
    performance: Performance | None = None
    solforge: EvaluationExtension = Field(default_factory=EvaluationExtension)


class Trace(BaseModel):
    """A workload-only trace has no solution and no evaluation."""

    definition: str = Field(min_length=1)
    workload: Workload
    solution: str | None = None
    evaluation: Evaluation | None = None

    @property
    def is_workload_trace(self) -> bool:
        return self.solution is None and self.evaluation is None
