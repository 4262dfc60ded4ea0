"""solforge optimize end to end on a tiny Llama (profile -> evolve -> kernelize -> check), and
its resume after kill -9: nothing that finished is done again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_support import write_tiny_config


def _cmd(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "solforge.cli", "optimize", str(config), "--out", str(out), "--top", "1",
            "--batch", "2", "--seq-len", "16", "--prompts", "2", "--rounds", "1", "--no-compile", *extra]


def _env(cache_dir: Path) -> dict:
    return {**os.environ, "SOLFORGE_CACHE_DIR": str(cache_dir), "COLUMNS": "200"}


@pytest.mark.slow
def test_optimize_end_to_end(tmp_path, cache_dir):
    config = write_tiny_config(tmp_path)
    out = tmp_path / "opt"
    proc = subprocess.run(_cmd(config, out, "--max-candidates", "2"), capture_output=True, text=True,
                          env=_env(cache_dir), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state["profile"] == "done" and state["check"] == "done"
    # the largest candidate with a numba seed and a kernelize binding (which one depends on the
    # timing of a busy machine; gemm has no numba seed and attention no binding)
    profile = json.loads((out / "profile" / "profile.json").read_text())
    eligible = [r["definition"] for r in profile["rows"] if r["kind"] in ("rmsnorm", "fused_add_rmsnorm", "silu_and_mul")]
    name = eligible[0]
    assert list(state["searches"]) == [name] and state["searches"][name]["winner"]
    run_dir = Path(state["searches"][name]["run_dir"])
    assert (run_dir / "winner" / "solution.json").is_file() and (run_dir / "definition.json").is_file()
    from solforge.search import Archive

    with Archive.open(run_dir, read_only=True) as archive:  # the searches time eager only by default
        assert archive.run.config["search"]["baselines"] == ["eager"]
        assert set(archive.run.config["baselines"]) == {"eager"}
    check = json.loads((out / "check.json").read_text())
    assert check["passed"] and check["kernels"][0]["calls"] > 0
    assert [s["variant"] for s in check["speed"]] == ["eager", "kernelized"]
    summary = (out / "summary.md").read_text()
    assert name in summary and "tokens/s" in summary
    assert "not searched" in proc.stdout  # gemm (no numba seed), attention (no binding) ...


def _evaluated(out: Path) -> int:
    from solforge.search import Archive

    runs = list((out / "runs").glob("*/*/archive.sqlite"))
    if not runs:
        return 0
    try:
        with Archive.open(runs[0].parent, read_only=True) as archive:
            return len(archive.evaluated_ids())
    except Exception:  # noqa: BLE001 - the database may be mid-creation
        return 0


@pytest.mark.slow
def test_optimize_resumes_after_kill_9_without_redoing_what_finished(tmp_path, cache_dir):
    from solforge.search import Archive

    config = write_tiny_config(tmp_path)
    out = tmp_path / "opt"
    cmd = _cmd(config, out, "--max-candidates", "4")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(cache_dir),
                            start_new_session=True)
    deadline = time.time() + 900
    while time.time() < deadline and _evaluated(out) < 1:
        assert proc.poll() is None, "optimize ended before it could be killed"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = json.loads((out / "state.json").read_text())
    assert state["profile"] == "done" and "check" not in state
    profile_mtime = (out / "profile" / "profile.json").stat().st_mtime_ns
    before = _evaluated(out)
    assert 1 <= before < 4

    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(cache_dir), timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    name = next((out / "runs").iterdir()).name
    assert "read back profile" in done.stdout and f"evolve {name} (continued)" in done.stdout
    assert (out / "profile" / "profile.json").stat().st_mtime_ns == profile_mtime  # not profiled again
    runs = list((out / "runs" / name).iterdir())
    assert len(runs) == 1  # the killed run was continued, not restarted
    with Archive.open(runs[0], read_only=True) as archive:
        assert len(archive.evaluated_ids()) == 4
        first_rounds = [sum(1 for r in archive.evaluations(c.id) if r.round_index == 0) for c in archive.candidates()]
        assert all(n <= 1 for n in first_rounds)  # no candidate evaluated twice
    again = subprocess.run(cmd, capture_output=True, text=True, env=_env(cache_dir), timeout=900)
    assert again.returncode == 0
    assert f"read back profile, evolve {name}, check" in again.stdout


@pytest.mark.parametrize("value", ["compile", "eager,triton", ""])
def test_search_baselines_must_name_eager_and_known_baselines(tmp_path, value):
    config = write_tiny_config(tmp_path)
    out = tmp_path / "opt"
    proc = subprocess.run(_cmd(config, out, "--max-candidates", "1", "--search-baselines", value),
                          capture_output=True, text=True, env=_env(tmp_path / "cache"), timeout=300)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr
    assert "--search-baselines" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()  # refused before anything was written


def test_the_searches_are_judged_on_the_shapes_the_model_runs():
    from solforge.problems import load_builtin
    from solforge.runtime.optimize import model_workloads
    from solforge.search.workloads import choose_workloads

    definition, workloads = load_builtin("rmsnorm_h4096")
    calls = [{"axes": {"num_tokens": 64}, "count": 5}, {"axes": {"num_tokens": 1}, "count": 2},
             {"axes": {"num_tokens": 64}, "count": 1}]
    at_model = model_workloads(definition, workloads, calls, "prefill", "cpu")
    choice = choose_workloads(definition, at_model, "cpu", selection="given")
    assert [w.axes for w in choice.search] == [{"num_tokens": 64}, {"num_tokens": 1}]  # each shape once
    assert [w.axes for w in choice.held_out] == [{"num_tokens": 99}]  # beside the first, never searched
    assert all(w.inputs == workloads[0].inputs and not w.smoke for w in at_model)
    assert choice.search[0].label == "model prefill num_tokens=64"
    assert model_workloads(definition, workloads, [], "prefill", "cpu") == []  # no calls: the caller keeps its own
    # without a token axis the gate is the definition's own held-out workloads
    attn, attn_wls = load_builtin("gqa_prefill_causal_h32_kv8_d128")
    gated = model_workloads(attn, attn_wls, [{"axes": {"batch_size": 1, "seq_len": 64}}], "prefill", "cpu")
    assert [w.axes for w in gated if not w.held_out] == [{"batch_size": 1, "seq_len": 64}]
    assert [w for w in gated if w.held_out] and all(w in attn_wls for w in gated if w.held_out)
