"""The options of one `solforge evolve` run, their checks, and what `--resume` restores.

Every check here runs before anything is measured: a bad number, an unknown strategy
or a missing limit is one line naming the flag (SpecError), never minutes of baselines
followed by a traceback. Resume restores everything the run was started with from its
archive: the device, strategy, operators and random seed (always the run's), the
budgets (`max_candidates`, `max_wall_seconds`, `max_cost_usd`: the run's unless given
again), the harness options and the agent operators' options.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solforge.bench import BenchConfig
from solforge.search.archive import DEFAULT_RUNS_ROOT
from solforge.search.archive_schema import RunBudget, RunInfo
from solforge.search.operators import OperatorOptions
from solforge.spec import SpecError

STRATEGIES = ("lineage", "map-elites", "best-of-n")
BASELINES = ("eager", "compile")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class EvolveConfig:
    """Options of one `solforge evolve` run. Field comments give units; the checks are in `check`."""

    device: str | None = None  # "cpu" or "cuda" (each visible GPU gets an evaluator); None: cuda when present
    strategy: str = "lineage"  # "lineage", "map-elites", or "best-of-n" (independent samples: the baseline)
    operators: tuple[str, ...] | None = None  # registry names; None: the registry's default set
    max_wall_seconds: float | None = None  # wall-clock budget of this invocation, seconds (`--budget`)
    max_candidates: int | None = None  # evaluated candidates over the whole run
    max_cost_usd: float | None = None  # LLM budget of the whole run, US dollars
    random_seed: int = 0  # of the operators' and strategies' random choices (`--random-seed`, alias `--seed`)
    runs_root: Path = DEFAULT_RUNS_ROOT
    queue_size: int = 4  # candidates proposed ahead of evaluation
    patience: int = 6  # evaluations without improvement before the supervisor redirects
    retime: bool = True  # re-time a would-be new best before accepting it
    heldout_tries: int = 5  # candidates tried on the held-out workloads, best first
    baselines: tuple[str, ...] | None = None  # default: eager and compile (torch.compile: inductor, C++ on the CPU)
    bench: BenchConfig | None = None  # harness options; None: the defaults for the device (or the resumed run's)
    dataset_root: Path | None = None  # where the definition's safetensors inputs live (when `bench` is None)
    llm: tuple[str, ...] = ()  # `--llm` values for the agent operator, e.g. ("openai:gpt-4o",)
    llm_config: Path | None = None  # the LLM config file (default: the user config dir's)
    agent_cmd: str | None = None  # command template of the agent-cli operator
    agent_timeout_s: float = 1800.0  # per agent-cli step, seconds
    tune_strategy: str = "tpe"  # the tune operator's tuner: tpe, gp, random, grid, local (`search.tuning`)
    workloads: str = "auto"  # "auto": on the CPU, real shapes within the caps (`search.workloads`); "smoke"
    cache: bool = True  # compile caches and the normalized/artifact dedup keys (`--no-cache`: neither)
    cut: bool = True  # cut timing at cut_factor x the best's latency (`--no-cut`: never)
    cut_factor: float = 3.0  # tinygrad's BEAM search cuts at 3x the best
    build_ahead: bool = True  # CPU: build the next candidates while one is judged (`--no-build-ahead`: never)
    proposal_workers: int | None = None  # proposals running at once; None: the evaluator's capacity
    # lockstep: reproducible whatever the evaluator's speed: propose one at a time, only while fewer
    # than `lockstep_in_flight` candidates are in flight (1: once every evaluation is kept), and take
    # results in the order submitted; more than 1 replays a run whose evaluator keeps several in
    # flight (the CPU's build-ahead keeps 3)
    lockstep: bool = False
    lockstep_in_flight: int = 1
    target: str | None = None  # cross-compile every Triton/CUDA candidate for this GPU target first ("sm_90a")
    compile_only: bool = False  # with `target`: judge on compile reports alone, no timing (a CPU-only machine)
    ray: str | None = None  # evaluate on Ray: "auto" or a cluster address; None: this machine's devices
    workers: int | None = None  # Ray actors; None: one per GPU (CUDA run) or per CPU (CPU run)

    @property
    def budget(self) -> RunBudget:
        return RunBudget(max_candidates=self.max_candidates, max_wall_seconds=self.max_wall_seconds,
                         max_cost_usd=self.max_cost_usd)

    def operator_options(self) -> OperatorOptions:
        return OperatorOptions(llm=tuple(self.llm), llm_config=self.llm_config, max_cost_usd=self.max_cost_usd,
                               agent_cmd=self.agent_cmd, agent_timeout_s=self.agent_timeout_s,
                               tune_strategy=self.tune_strategy)

    def stored(self) -> dict[str, Any]:
        """What the archive keeps of the run's options beyond its budget (`runs.config_json`)."""
        return {
            "bench": self.bench.model_dump(mode="json") if self.bench is not None else None,
            "operator_options": {"llm": list(self.llm), "llm_config": str(self.llm_config) if self.llm_config else None,
                                 "agent_cmd": self.agent_cmd, "agent_timeout_s": self.agent_timeout_s},
            "search": {"queue_size": self.queue_size, "patience": self.patience, "retime": self.retime,
                       "heldout_tries": self.heldout_tries,
                       "baselines": list(self.baselines) if self.baselines is not None else None,
                       "tune_strategy": self.tune_strategy, "workloads": self.workloads, "cache": self.cache,
                       "cut": self.cut, "cut_factor": self.cut_factor, "target": self.target,
                       "compile_only": self.compile_only},
        }


def _positive(value: float | None, flag: str, what: str) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise SpecError(f"{flag}: expected {what} > 0, got {value:g}")


def check(config: EvolveConfig, *, resuming: bool = False) -> None:
    """Raise SpecError, one line naming the flag, for any option out of range; a new run
    also needs a limit (`--budget` or `--max-candidates`)."""
    if config.device is not None and config.device.split(":")[0] not in DEVICES:
        raise SpecError(f"--device: expected 'cuda' or 'cpu', got '{config.device}'")
    if config.strategy not in STRATEGIES:
        raise SpecError(f"--strategy: expected lineage, map-elites or best-of-n, got '{config.strategy}'")
    _positive(config.max_wall_seconds, "--budget", "a duration")
    if config.max_candidates is not None and config.max_candidates < 1:
        raise SpecError(f"--max-candidates: expected a positive number, got {config.max_candidates}")
    if config.max_cost_usd is not None and (not math.isfinite(config.max_cost_usd) or config.max_cost_usd < 0):
        raise SpecError(f"--max-cost-usd: expected US dollars >= 0, got {config.max_cost_usd:g}")
    _positive(config.agent_timeout_s, "--agent-timeout", "seconds")
    for name in ("queue_size", "patience", "heldout_tries", "lockstep_in_flight"):
        if getattr(config, name) < 1:
            raise SpecError(f"EvolveConfig.{name}: expected >= 1, got {getattr(config, name)}")
    if config.lockstep_in_flight > 1 and not config.lockstep:
        raise SpecError(f"EvolveConfig.lockstep_in_flight: {config.lockstep_in_flight} needs lockstep=True "
                        "(without lockstep the evaluator's capacity sets how many are in flight)")
    for b in config.baselines or ():
        if b not in BASELINES:
            raise SpecError(f"--baselines: unknown baseline '{b}' (expected eager, compile)")
    from solforge.search.tuning import STRATEGIES as TUNE_STRATEGIES
    from solforge.search.workloads import SELECTIONS

    if config.tune_strategy not in TUNE_STRATEGIES:
        raise SpecError(f"--tune: expected one of {', '.join(TUNE_STRATEGIES)}, got '{config.tune_strategy}'")
    if config.workloads not in SELECTIONS:
        raise SpecError(f"--workloads: expected one of {', '.join(SELECTIONS)}, got '{config.workloads}'")
    if not math.isfinite(config.cut_factor) or config.cut_factor <= 1:
        raise SpecError(f"EvolveConfig.cut_factor: expected > 1, got {config.cut_factor:g}")
    for name, flag in (("proposal_workers", "--proposal-workers"), ("workers", "--workers")):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise SpecError(f"{flag}: expected >= 1, got {value}")
    if config.target is not None:
        from solforge.hardware.targets import target_by_name

        try:
            target_by_name(config.target)
        except SpecError as exc:
            raise SpecError(f"--target: {exc}") from None
    if config.compile_only and config.target is None:
        raise SpecError("--compile-only: give --target (e.g. sm_90a): compile-level fitness is for a GPU target")
    if not resuming and config.max_wall_seconds is None and config.max_candidates is None:
        raise SpecError("give --budget (e.g. 10m) or --max-candidates N: a search needs a limit")


def restore(config: EvolveConfig, run: RunInfo) -> tuple[EvolveConfig, list[str]]:
    """`config` with what the resumed `run` was started with, and one phrase per restored
    option for the user (e.g. "max_wall_seconds 60 (this invocation)").

    The run's device, strategy, operators and random seed always win; its budgets, bench
    options and agent options fill what `config` leaves unset. Raises SpecError when the
    stored bench options no longer parse.
    """
    said: list[str] = []
    stored: Mapping[str, Any] = run.config

    def take(name: str, given: Any, kept: Any, unit: str = "") -> Any:
        if given is not None:
            return given
        if kept is not None:
            said.append(f"{name} {kept:g}{unit}" if isinstance(kept, float) else f"{name} {kept}{unit}")
        return kept

    budget = run.budget
    changes: dict[str, Any] = {
        "device": run.device.split(":")[0], "strategy": run.strategy, "operators": tuple(run.operators),
        "random_seed": run.seed,
        "max_candidates": take("max_candidates", config.max_candidates, budget.max_candidates),
        "max_wall_seconds": take("max_wall_seconds", config.max_wall_seconds, budget.max_wall_seconds,
                                 " s (afresh for this invocation)"),
        "max_cost_usd": take("max_cost_usd", config.max_cost_usd, budget.max_cost_usd, " USD"),
    }
    said[:0] = [f"device {changes['device']}", f"strategy {run.strategy}", f"operators {', '.join(run.operators)}",
                f"random seed {run.seed}"]
    if config.bench is None and stored.get("bench"):
        try:
            changes["bench"] = BenchConfig.model_validate(stored["bench"])
        except ValueError as exc:
            raise SpecError(f"--resume {run.run_id}: the run's bench options no longer parse ({exc})") from None
        said.append("bench options")
    options = stored.get("operator_options") or {}
    if not config.llm and options.get("llm"):
        changes["llm"] = tuple(options["llm"])
        said.append(f"--llm {','.join(options['llm'])}")
    if config.llm_config is None and options.get("llm_config"):
        changes["llm_config"] = Path(options["llm_config"])
    if config.agent_cmd is None and options.get("agent_cmd"):
        changes["agent_cmd"] = options["agent_cmd"]
        changes["agent_timeout_s"] = float(options.get("agent_timeout_s", config.agent_timeout_s))
        said.append("--agent-cmd")
    search = stored.get("search") or {}
    for name in ("queue_size", "patience", "retime", "heldout_tries", "tune_strategy", "workloads", "cache", "cut",
                 "cut_factor", "target", "compile_only"):
        if name in search:
            changes[name] = search[name]
    if search.get("target"):
        said.append(f"--target {search['target']}" + (" --compile-only" if search.get("compile_only") else ""))
    if config.baselines is None and search.get("baselines"):
        changes["baselines"] = tuple(search["baselines"])
    return dataclasses.replace(config, **changes), said
