"""Compile caches keyed by a solution's sources (`solforge.bench.compile_cache`, issue 15
§2): a numba solution evaluated again loads what its first evaluation compiled instead
of compiling it again; another solution gets its own directory; nothing is cached
without a cache directory; the writes are the solution's own and no guard names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from solforge.bench import BenchConfig, evaluate
from solforge.bench.compile_cache import sources_key
from solforge.knowledge import seeds_for
from solforge.problems import load_builtin
from solforge.search.config import EvolveConfig
from solforge.search.evolve import prepare
from solforge.spec import EvaluationStatus, SourceFile

PROBLEM, ROWS = "rmsnorm_h4096", "numba/rmsnorm_rows"


def _problem():
    definition, workloads = load_builtin(PROBLEM)
    smoke = [w for w in workloads if (w.label or "").startswith("smoke")][:1]
    kernel = next(k for k in seeds_for(definition, "numba") if k.name == ROWS)
    return definition, smoke, kernel


def _files(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `root`: relative path -> (mtime in ns, content)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_the_key_is_the_sources_not_the_name():
    definition, _, kernel = _problem()
    a = kernel.to_solution(definition, name="a")
    renamed = kernel.to_solution(definition, name="b")
    other = kernel.to_solution(definition, {"FASTMATH": True}, name="a")
    assert sources_key(a) == sources_key(renamed) != sources_key(other)
    moved = a.model_copy(update={"sources": [SourceFile(path="elsewhere.py", content=a.sources[0].content)]})
    assert sources_key(moved) != sources_key(a)  # the path is part of what numba's cache names


def test_a_second_evaluation_of_the_same_sources_loads_the_first_ones_compiled_kernel(tmp_path):
    definition, smoke, kernel = _problem()
    config = BenchConfig(device="cpu", compile_cache_dir=str(tmp_path))
    solution = kernel.to_solution(definition, name="first")
    traces = evaluate(definition, smoke, solution, "cpu", config)
    assert [t.evaluation.status for t in traces] == [EvaluationStatus.PASSED], traces[0].evaluation.log
    own = tmp_path / sources_key(solution) / "numba"
    first = _files(own)
    assert any(name.endswith(".nbi") for name in first) and any(name.endswith(".nbc") for name in first), first
    # the same sources under another name: numba finds its index and writes nothing (a miss would save anew)
    traces = evaluate(definition, smoke, kernel.to_solution(definition, name="again"), "cpu", config)
    assert [t.evaluation.status for t in traces] == [EvaluationStatus.PASSED], traces[0].evaluation.log
    assert _files(own) == first
    # other sources: a directory of their own, the first one's untouched
    other = kernel.to_solution(definition, {"FASTMATH": True}, name="other")
    traces = evaluate(definition, smoke, other, "cpu", config)
    assert [t.evaluation.status for t in traces] == [EvaluationStatus.PASSED], traces[0].evaluation.log
    assert any(n.endswith(".nbi") for n in _files(tmp_path / sources_key(other) / "numba"))
    assert _files(own) == first


def test_without_a_cache_directory_nothing_is_cached(tmp_path, monkeypatch):
    definition, smoke, kernel = _problem()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    traces = evaluate(definition, smoke, kernel.to_solution(definition), "cpu", BenchConfig(device="cpu"))
    assert [t.evaluation.status for t in traces] == [EvaluationStatus.PASSED], traces[0].evaluation.log
    assert not (tmp_path / "numba").exists() or not any((tmp_path / "numba").rglob("*.nbi"))


@pytest.mark.parametrize("cache", [True, False])
def test_evolve_caches_compiles_unless_no_cache(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path / "cache"))
    definition, workloads = load_builtin(PROBLEM)
    plan = prepare(definition, workloads, EvolveConfig(device="cpu", cache=cache, runs_root=str(tmp_path / "runs"),
                                                       max_candidates=1))
    try:
        configured = plan.evaluator.backend.config.compile_cache_dir
        assert plan.config.bench.compile_cache_dir is None  # the run's stored options stay the user's
    finally:
        plan.evaluator.close()
    if cache:
        assert configured is not None and Path(configured).is_relative_to(tmp_path / "cache")
    else:
        assert configured is None
