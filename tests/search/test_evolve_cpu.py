"""The main job on the CPU: `solforge evolve` on an rmsnorm problem beats its first
candidate, keeps the full lineage, and survives a kill -9 with nothing evaluated twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solforge.bench import BenchConfig
from solforge.problems import load_builtin
from solforge.search import Archive, RunStatus
from solforge.search.controller import EvolveConfig
from solforge.search.evolve import evolve

PROBLEM = "rmsnorm_h4096"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("solforge-cache")
    old = os.environ.get("SOLFORGE_CACHE_DIR")
    os.environ["SOLFORGE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SOLFORGE_CACHE_DIR", None)
    else:
        os.environ["SOLFORGE_CACHE_DIR"] = old


def _first_rounds(archive: Archive) -> dict[int, int]:
    return {c.id: sum(1 for r in archive.evaluations(c.id) if r.round_index == 0) for c in archive.candidates()}


@pytest.mark.slow
def test_evolve_beats_its_first_candidate_and_keeps_the_lineage(tmp_path, cache_dir):
    definition, workloads = load_builtin(PROBLEM)
    config = EvolveConfig(device="cpu", max_candidates=20, runs_root=tmp_path,
                          bench=BenchConfig(device="cpu", flush_bytes=8 << 20))
    result = evolve(definition, workloads, config)

    assert result.evaluated == 20
    assert result.first_fitness is not None and result.best_fitness > result.first_fitness
    assert result.winner_id is not None and result.generalizes is not None
    for kind in ("solution", "source", "traces"):
        assert result.exported[kind].is_file()
    assert {r.held_out for r in result.rows} == {False, True}

    with Archive.open(result.run_dir, read_only=True) as archive:
        assert archive.run.status is RunStatus.finished
        lineage = archive.lineage()
        assert len(lineage) >= 2  # the first version, and at least one improvement on it
        fitness = [v.fitness for v in lineage]
        assert fitness == sorted(fitness) and fitness[-1] == pytest.approx(result.best_fitness)
        ids = {c.id for c in archive.candidates()}
        for entry in lineage:  # every version traces back through recorded parents to a seed
            c = archive.candidate(entry.candidate_id)
            while c.parent_ids:
                assert set(c.parent_ids) <= ids
                c = archive.candidate(c.parent_ids[0])
            assert c.operator in ("seed", "initial")
        assert all(n == 1 for n in _first_rounds(archive).values() if n)
        assert archive.evaluations(result.winner_id, held_out=True)  # the gate ran on held-out workloads


def _evolve_cmd(runs_root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "solforge.cli", "evolve", PROBLEM, "--device", "cpu", "--max-candidates", "10",
            "--runs-root", str(runs_root), *extra]


def _evaluated(run_dir: Path) -> int:
    try:
        with Archive.open(run_dir, read_only=True) as archive:
            return len(archive.evaluated_ids())
    except Exception:  # noqa: BLE001 - the database may not exist yet
        return 0


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_evaluates_nothing_twice(tmp_path, cache_dir):
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_evolve_cmd(runs), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline:
        dirs = list(runs.glob("*/archive.sqlite")) if runs.exists() else []
        if dirs:
            run_dir = dirs[0].parent
            if _evaluated(run_dir) >= 3:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the controller and its harness worker, mid-run
    proc.wait()
    before = _evaluated(run_dir)
    assert 3 <= before < 10

    with Archive.open(run_dir, read_only=True) as archive:
        assert archive.run.status is RunStatus.running  # it never got to say it stopped
        assert archive._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    done = subprocess.run(_evolve_cmd(runs, "--resume", run_dir.name), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with Archive.open(run_dir, read_only=True) as archive:
        assert archive.run.status is RunStatus.finished
        assert len(archive.evaluated_ids()) == 10  # the budget counts the whole run
        rounds = _first_rounds(archive)
        assert all(n <= 1 for n in rounds.values())  # nothing evaluated twice
        assert sum(rounds.values()) == 10
        assert archive.in_flight() == []


@pytest.mark.slow
def test_map_elites_fills_cells_on_islands_and_gates_the_best(tmp_path, cache_dir):
    definition, workloads = load_builtin(PROBLEM)
    config = EvolveConfig(device="cpu", strategy="map-elites", max_candidates=8, runs_root=tmp_path,
                          bench=BenchConfig(device="cpu", flush_bytes=8 << 20))
    result = evolve(definition, workloads, config)
    assert result.evaluated == 8 and result.winner_id is not None
    with Archive.open(result.run_dir, read_only=True) as archive:
        elites = archive.elites()
        assert elites, "map-elites keeps at least one elite cell"
        assert len({tuple(e.cell) for e in elites}) >= 2  # distinct descriptors, not one best
        assert archive.lineage() == []  # no lineage in map-elites
        best = max(elites, key=lambda e: e.fitness)
        assert best.fitness == pytest.approx(result.best_fitness)
