"""Helpers shared by the search tests: a small rmsnorm problem (CPU-sized search workloads
and a CPU-sized held-out one, so no test pays for real sizes), a harness configuration
that times briefly, a dataset directory holding that problem for the CLI, and a
scripted `Evaluator` for the controller's logic.

The scripted evaluator stands in for the harness only where a test checks what the
controller decides (re-timing, commits, budgets): its verdicts are a fixed function of
the candidate's parameters, so those tests assert the same thing on any machine at any
load. Everything the harness itself decides is tested against the real harness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from solforge.bench import BenchConfig, TimingBudget
from solforge.knowledge import read_params, seeds_for
from solforge.problems import load_builtin
from solforge.search.evaluator import EvaluationRequest, LocalEvaluator
from solforge.spec import (
    Definition,
    Environment,
    Evaluation,
    EvaluationExtension,
    Performance,
    SolReport,
    Solution,
    Trace,
    Workload,
    dump_json,
    workload_trace,
    write_jsonl,
)

PROBLEM = "rmsnorm_h4096"
# A brief timing: these tests check what is decided, not how fast anything is.
FAST_BENCH = BenchConfig(device="cpu", flush_bytes=8 << 20,
                         timing=TimingBudget(warmup_s=0.01, max_time_s=0.2, max_iters=10, min_iters=3))


def workload(uuid: str, tokens: int, label: str, held_out: bool = False) -> Workload:
    return Workload(uuid=uuid, axes={"num_tokens": tokens},
                    solforge={"smoke": True, "held_out": held_out, "label": label})


def small_problem() -> tuple[Definition, list[Workload]]:
    """rmsnorm_h4096 with two CPU-sized search workloads and one CPU-sized held-out one."""
    definition, _ = load_builtin(PROBLEM)
    return definition, [workload("small-t1", 1, "smoke t=1"), workload("small-t7", 7, "smoke t=7"),
                        workload("small-held-t5", 5, "held-out t=5", held_out=True)]


def write_dataset(root: Path) -> Path:
    """`small_problem` as a FlashInfer-Trace dataset directory (for `solforge evolve --dataset`)."""
    definition, workloads = small_problem()
    (root / "definitions" / definition.op_type).mkdir(parents=True)
    (root / "definitions" / definition.op_type / f"{definition.name}.json").write_text(dump_json(definition))
    write_jsonl(root / "workloads" / definition.op_type / f"{definition.name}.jsonl",
                [workload_trace(definition.name, w) for w in workloads])
    return root


def scripted_score(solution: Solution, definition: Definition) -> float:
    """A fitness that is a fixed function of a seed-derived candidate's parameters: each
    parameter counts by its position in the declared range (the last value best), so the
    defaults (mostly first values) are beaten by tuning. Between 0.2 and 0.9."""
    kernels = {k.entry_file: k for k in seeds_for(definition, solution.spec.language)}
    source = solution.sources[0]
    kernel = kernels[source.path]
    params = read_params(source.content)
    positions = [list(kernel.param_space[n]).index(v) / max(1, len(kernel.param_space[n]) - 1)
                 for n, v in params.items()]
    return 0.2 + 0.7 * sum(positions) / len(positions)


def scripted_trace(definition: Definition, solution: Solution, w: Workload, score: float) -> Trace:
    """A PASSED trace whose SOL score is `score` (latency and SOL time to match)."""
    return Trace(definition=definition.name, workload=w, solution=solution.name, evaluation=Evaluation(
        status="PASSED", environment=Environment(hardware="cpu"), timestamp="2026-01-01T00:00:00Z",
        performance=Performance(latency_ms=0.01 / score),
        solforge=EvaluationExtension(sol=SolReport(sol_time_ms=0.005, sol_fraction=score / 2, sol_score=score))))


class ScriptedBackend:
    """A harness backend whose verdicts are `scripted_score` (picklable: a Ray actor can
    hold it). With `fail_retime`, the second evaluation of a candidate on the search
    workloads (its re-timing) raises, as a harness whose worker was lost would.
    `sleep_s` makes each evaluation take that long (a sleep-bound evaluation)."""

    compile_only = False

    def __init__(self, definition: Definition, fail_retime: bool = False, sleep_s: float = 0.0,
                 attempts_log: Path | None = None, die_when: dict | None = None) -> None:  # fmt: skip
        self.definition, self.fail_retime, self.sleep_s = definition, fail_retime, sleep_s
        self.attempts_log = attempts_log  # one line per evaluation started: "<pid> <solution name>"
        self.die_when = die_when  # the process exits (as a crashed worker) on candidates with these parameters
        self.calls: list[tuple[str, tuple[str, ...]]] = []  # (source digest, workload uuids)
        self.requests: list[EvaluationRequest] = []

    def prepare(self) -> None:
        pass

    def evaluate(self, request: EvaluationRequest, device: str, baselines) -> list[Trace]:
        import os
        import time

        solution, workloads = request.solution, request.workloads
        if self.attempts_log is not None:
            with open(self.attempts_log, "a") as f:
                f.write(f"{os.getpid()} {solution.name}\n")
        if self.die_when and all(read_params(solution.sources[0].content).get(k) == v
                                 for k, v in self.die_when.items()):
            os._exit(3)
        self.requests.append(request)
        digest = hashlib.sha256(solution.sources[0].content.encode()).hexdigest()
        key = (digest, tuple(w.uuid for w in workloads))
        seen = key in self.calls
        self.calls.append(key)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.fail_retime and seen and not any(w.held_out for w in workloads):
            raise RuntimeError("the harness lost its worker")
        score = scripted_score(solution, self.definition)
        return [scripted_trace(self.definition, solution, w, score) for w in workloads]

    def measure_baselines(self, workloads: Sequence[Workload], names: Sequence[str], device: str):
        return {"eager": {}}, {}, {}


class ScriptedEvaluator(LocalEvaluator):
    """A `LocalEvaluator` over `ScriptedBackend` (no device to calibrate: the scores are scripted)."""

    def __init__(self, definition: Definition, fail_retime: bool = False, capacity: int = 1,
                 sleep_s: float = 0.0) -> None:  # fmt: skip
        super().__init__(ScriptedBackend(definition, fail_retime, sleep_s), ["cpu"] * capacity)
        self.baselines = {"eager": {}}

    @property
    def calls(self) -> list[tuple[str, tuple[str, ...]]]:
        return self.backend.calls

    def start(self) -> None:
        pass
