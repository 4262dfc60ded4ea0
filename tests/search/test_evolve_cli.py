"""`solforge evolve` refuses bad input before it measures anything: one line naming the
flag or file, exit code 2, no traceback, and no run directory left behind. And what
`--resume` restores, read back from the archive, before anything runs."""

from __future__ import annotations

import pytest
from search_support import FAST_BENCH, ScriptedBackend, ScriptedEvaluator, small_problem

from solforge.cli import main
from solforge.problems import load_builtin
from solforge.search import Archive, RunBudget
from solforge.search.config import EvolveConfig
from solforge.search.evolve import RunFailed, RunInterrupted, execute, prepare
from solforge.spec import SpecError

BASE = ["evolve", "rmsnorm_h4096", "--device", "cpu"]


def _refused(capsys, *args: str) -> str:
    code = main([*BASE, *args])
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    err = captured.err.strip()
    assert err.startswith("solforge: ") and "\n" not in err and "Traceback" not in captured.err
    return err


def test_bad_numbers_are_one_line_each(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = ["--runs-root", str(tmp_path / "runs")]
    assert _refused(capsys, *runs) == "solforge: give --budget (e.g. 10m) or --max-candidates N: a search needs a limit"
    assert "--budget: expected a duration like 90s" in _refused(capsys, "--budget", "ten minutes", *runs)
    assert "--budget: expected a duration > 0, got 0" in _refused(capsys, "--budget", "0", *runs)
    assert "--budget: expected a duration like 90s" in _refused(capsys, "--budget", "-5m", *runs)
    assert "--max-candidates: expected a positive number, got 0" in _refused(capsys, "--max-candidates", "0", *runs)
    assert "--max-candidates: expected a positive number, got -3" in _refused(capsys, "--max-candidates", "-3", *runs)
    assert "--max-cost-usd: expected US dollars >= 0, got -1" in _refused(
        capsys, "--max-candidates", "2", "--max-cost-usd", "-1", *runs)
    assert "--agent-timeout: expected seconds > 0, got 0" in _refused(
        capsys, "--max-candidates", "2", "--agent-timeout", "0", *runs)
    assert "--strategy: expected lineage, map-elites or best-of-n, got 'random'" in _refused(
        capsys, "--max-candidates", "2", "--strategy", "random", *runs)
    assert not (tmp_path / "runs").exists()  # nothing was created for a refused run


def test_unknown_names_and_missing_operator_needs(tmp_path, capsys):
    runs = ["--runs-root", str(tmp_path / "runs"), "--max-candidates", "1"]
    err = _refused(capsys, *runs, "--operators", "tune,mutate")
    assert "--operators: unknown operator 'mutate' (expected tune, crossover, seed, agent, agent-cli" in err
    assert "--agent-cmd" in _refused(capsys, *runs, "--operators", "agent-cli")
    assert "unknown problem 'rmsnorm_h4069'" in _refused_problem(capsys, "rmsnorm_h4069", *runs)
    assert "--resume nope: no such run" in _refused(capsys, *runs, "--resume", "nope")
    assert "--llm: unknown provider 'nosuch'" in _refused(capsys, *runs, "--llm", "nosuch:model")


def _refused_problem(capsys, problem: str, *args: str) -> str:
    code = main(["evolve", problem, "--device", "cpu", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    return err


def test_an_op_type_without_a_seed_kernel_is_refused_at_once_with_the_ones_that_have_one(tmp_path, capsys):
    definition, _ = load_builtin("gelu_tanh_i3072")
    err = _refused_problem(capsys, "gelu_tanh_i3072", "--max-candidates", "1", "--runs-root", str(tmp_path / "runs"))
    assert f"definition 'gelu_tanh_i3072' (op_type '{definition.op_type}')" in err
    assert "no numba seed kernel" in err and "op types with one: " in err and "rmsnorm" in err
    assert not (tmp_path / "runs").exists()  # refused before any run directory, or any baseline


def test_an_unwritable_runs_root_is_refused_before_any_baseline(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    err = _refused(capsys, "--max-candidates", "1", "--runs-root", str(blocker / "runs"))
    assert err == f"solforge: --runs-root {blocker / 'runs'}: not writable (Not a directory)"


def test_resume_restores_every_budget_and_says_which(tmp_path):
    definition, workloads = small_problem()
    started = EvolveConfig(device="cpu", max_candidates=7, max_wall_seconds=60.0, max_cost_usd=2.5, random_seed=9,
                           bench=FAST_BENCH, llm=("openai:m",), operators=("tune", "seed"))
    with Archive.create(definition.name, device="cpu", strategy="map-elites", operators=["tune", "seed"], seed=9,
                        budget=started.budget, config={**started.stored(), "baselines": {"eager": {}}},
                        runs_root=tmp_path, run_id="r") as archive:
        assert archive.run.budget == RunBudget(max_candidates=7, max_wall_seconds=60.0, max_cost_usd=2.5)
    plan = prepare(definition, workloads, EvolveConfig(runs_root=tmp_path), resume="r")
    c = plan.config
    assert (c.max_candidates, c.max_wall_seconds, c.max_cost_usd) == (7, 60.0, 2.5)
    assert (c.device, c.strategy, c.operators, c.random_seed) == ("cpu", "map-elites", ("tune", "seed"), 9)
    assert c.bench == FAST_BENCH and c.llm == ("openai:m",)
    said = ", ".join(plan.restored)
    for phrase in ("max_candidates 7", "max_wall_seconds 60 s", "max_cost_usd 2.5 USD", "bench options",
                   "random seed 9", "strategy map-elites"):
        assert phrase in said
    # a budget given again wins over the stored one, and is not reported as restored
    again = prepare(definition, workloads, EvolveConfig(runs_root=tmp_path, max_candidates=9), resume="r")
    assert again.config.max_candidates == 9 and "max_candidates" not in ", ".join(again.restored)
    with pytest.raises(SpecError, match="that run is of 'rmsnorm_h4096', not 'gelu_tanh_i3072'"):
        prepare(load_builtin("gelu_tanh_i3072")[0], workloads, EvolveConfig(runs_root=tmp_path), resume="r")


class _BrokenBackend(ScriptedBackend):
    def evaluate(self, request, device, baselines):
        raise RuntimeError("no worker could start")


class _BrokenHarness(ScriptedEvaluator):
    def __init__(self, definition):
        super().__init__(definition)
        self.backend = _BrokenBackend(definition)


class _InterruptedBaselines(ScriptedEvaluator):
    def measure_baselines(self, workloads, names):
        raise KeyboardInterrupt


def test_a_run_that_fails_or_is_interrupted_before_its_first_candidate_leaves_no_run(tmp_path):
    definition, workloads = small_problem()
    plan = prepare(definition, workloads, EvolveConfig(device="cpu", max_candidates=3, runs_root=tmp_path,
                                                       bench=FAST_BENCH, operators=("seed",)))
    plan.evaluator = _BrokenHarness(definition)
    with pytest.raises(RunFailed, match="before any candidate was evaluated: the harness failed 5 evaluations in a "
                                        "row \\(last: RuntimeError: no worker could start\\)"):
        execute(plan)
    assert list(tmp_path.iterdir()) == []
    plan.evaluator = _InterruptedBaselines(definition)
    with pytest.raises(RunInterrupted) as interrupted:
        execute(plan)
    assert interrupted.value.run_id is None and list(tmp_path.iterdir()) == []
