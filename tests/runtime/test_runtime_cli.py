"""The kernelize and export commands: a working run, and each bad input as one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys


def _cli(*args, cache_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOLFORGE_CACHE_DIR": str(cache_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "solforge.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def test_kernelize_command_runs_the_kernels(tiny, cache_dir):
    proc = _cli("kernelize", tiny["config"], "--winners", tiny["winners"]["rmsnorm_h64"], "--winners",
                tiny["winners"]["silu_and_mul_i128"], "--dataset", tiny["profile"], "--batch", "2", "--seq-len", "16",
                cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rmsnorm_h64: 5 modules, 5 kernel calls in one forward" in proc.stdout  # no fused winner: every norm
    assert "silu_and_mul_i128: 2 modules, 2 kernel calls in one forward" in proc.stdout


def test_kernelize_bad_inputs_are_one_line(tiny, cache_dir, tmp_path):
    from solforge.knowledge import seeds_for
    from solforge.problems import load_builtin
    from solforge.spec import dump_json

    (tmp_path / "empty-run").mkdir()
    defn, _ = load_builtin("rmsnorm_h4096")
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    (gpu / "solution.json").write_text(dump_json(seeds_for(defn, "triton")[0].to_solution(defn)))
    w = tiny["winners"]["rmsnorm_h64"]
    cases = [
        (["--winners", tmp_path / "empty-run"], "no winner"),
        (["--winners", gpu], "runs on cuda"),
        (["--winners", w, "--dtype", "float32"], "dtype float32: winner"),
        (["--winners", w, "--dtype", "float64"], "--dtype: expected one of"),
    ]
    for extra, message in cases:
        proc = _cli("kernelize", tiny["config"], *extra, cache_dir=cache_dir)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (extra, proc.stderr[-1500:])


def test_export_command(tiny, cache_dir, tmp_path):
    out = tmp_path / "pkg"
    proc = _cli("export", tiny["winners"]["rmsnorm_h64"], "--as", "hf-kernels", out, "--dataset", tiny["profile"],
                cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert (out / "build" / "torch-cpu" / "layers.py").is_file() and "RMSNorm" in proc.stdout
    bad = _cli("export", tiny["winners"]["rmsnorm_h64"], "--as", "onnx", tmp_path / "x", cache_dir=cache_dir)
    assert bad.returncode == 2 and "--as: expected one of hf-kernels" in bad.stderr and not (tmp_path / "x").exists()


def test_optimize_bad_input_writes_nothing(tmp_path, cache_dir):
    out = tmp_path / "opt"
    proc = _cli("optimize", "nosuch-org/nosuch-model", "--max-candidates", "1", "--out", out, cache_dir=cache_dir)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not in the local Hugging Face cache" in proc.stderr and not out.exists()
    proc = _cli("optimize", "llama-3.1-8b", "--out", out, cache_dir=cache_dir)
    assert proc.returncode == 2 and "--budget" in proc.stderr and not out.exists()
