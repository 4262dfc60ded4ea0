"""A device kind and a language, each from one file under tests/ (tests/hardware/
toy_device.py, tests/bench/toy_language.py), run end to end through `solforge bench`
with no other file touched: the judge times on the toy device's clock, the solution's
process builds with the toy language's plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
KERNELS = TESTS / "bench" / "kernels"

NUMPY_RMSNORM = (
    "import numpy as np\n\n\n"
    "def run(x, w):\n"
    "    scale = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-5)\n"
    "    return (x * scale * w).astype(np.float32)\n"
)


def test_a_toy_device_and_a_toy_language_run_through_solforge_bench(tmp_path):
    definition = json.loads((KERNELS / "rmsnorm_small.json").read_text())
    (tmp_path / "definitions" / "rmsnorm").mkdir(parents=True)
    (tmp_path / "workloads" / "rmsnorm").mkdir(parents=True)
    (tmp_path / "definitions" / "rmsnorm" / "rmsnorm_small.json").write_text(json.dumps(definition))
    workload = {"definition": definition["name"], "solution": None,
                "workload": {"uuid": "toy-t6", "axes": {"T": 6}, "inputs": {"x": {"type": "random"},
                                                                           "w": {"type": "random"}}}}
    (tmp_path / "workloads" / "rmsnorm" / "rmsnorm_small.jsonl").write_text(json.dumps(workload) + "\n")
    kernel = tmp_path / "numpy_rmsnorm.py"
    kernel.write_text(NUMPY_RMSNORM)
    out = tmp_path / "traces.jsonl"
    env = {**os.environ, "SOLFORGE_PLUGINS": f"{TESTS / 'hardware' / 'toy_device.py'},{TESTS / 'bench' / 'toy_language.py'}"}
    proc = subprocess.run(
        [sys.executable, "-c", "from solforge.cli import console_main; console_main()", "bench", definition["name"],
         "--dataset", str(tmp_path), "-s", str(kernel), "--language", "numpyish", "--device", "toy:1",
         "--baselines", "eager", "--workloads", "all", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    traces = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [t for t in traces if t["solution"] == "numpy_rmsnorm"]
    assert len(mine) == 1, traces
    evaluation = mine[0]["evaluation"]
    assert evaluation["status"] == "PASSED", evaluation["log"]
    assert evaluation["environment"]["hardware"] == "Toy Accelerator 1"
    assert evaluation["solforge"]["device"] == "toy:1"
    assert evaluation["solforge"]["timing"]["timed_by"] == "judge"  # the toy kind's timer is the host clock
