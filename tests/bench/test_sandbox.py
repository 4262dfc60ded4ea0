"""`BenchConfig(sandbox=True)`: the solution's process runs under bubblewrap (no network,
read-only root, only its working directory and a private /tmp writable, its own PID
namespace). A solution that opens a socket or writes outside its directory fails with a
finding that names the attempt; an honest one passes. Skips, saying why, where
bubblewrap cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from solforge.bench import BenchConfig, TimingBudget, evaluate
from solforge.bench.processes import sandbox_problem
from solforge.spec import BuildSpec, EvaluationStatus, Solution, SourceFile, Workload, load_definition

KERNELS = Path(__file__).parent / "kernels"
DEFN = load_definition(KERNELS / "rmsnorm_small.json")
WORKLOAD = [Workload(uuid="t5", axes={"T": 5})]
CONFIG = BenchConfig(timing=TimingBudget(warmup_s=0.0, max_time_s=0.3, max_iters=5, min_iters=5), timeout_s=120,
                     sandbox=True)
PROBLEM = sandbox_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"no sandbox here: {PROBLEM}")

RMSNORM = ("    xf = x.float()\n"
           "    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w.float()).to(x.dtype)\n")


def verdict(body: str):
    source = "import torch\n\n\ndef run(x, w):\n" + body + RMSNORM
    solution = Solution(name="sandboxed", definition=DEFN.name,
                        spec=BuildSpec(language="pytorch", entry_point="main.py::run", destination_passing_style=False),
                        sources=[SourceFile(path="main.py", content=source)])
    return evaluate(DEFN, WORKLOAD, solution, "cpu", CONFIG)[0].evaluation


def test_an_honest_solution_passes_in_the_sandbox():
    ev = verdict("")
    assert ev.status is EvaluationStatus.PASSED, ev.log
    assert ev.solforge.guard_findings == []


def test_opening_a_network_connection_is_refused_and_named():
    ev = verdict("    import socket\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n")
    assert ev.status is EvaluationStatus.REWARD_HACK, ev.log
    assert "network: socket.connect ('192.0.2.1', 80)" in ev.log and "Network is unreachable" in ev.log, ev.log


def test_writing_outside_the_working_directory_is_refused_and_named():
    target = Path(__file__).parent / "escaped-from-the-sandbox.txt"  # read-only inside the sandbox
    ev = verdict(f"    open({str(target)!r}, 'w').write('x')\n")
    assert ev.status is EvaluationStatus.REWARD_HACK, ev.log
    assert f"filesystem: open for writing {target} outside the working directory" in ev.log, ev.log
    assert "Read-only file system" in ev.log and not target.exists()


def test_the_judge_is_out_of_sight():
    # Its own PID namespace: the solution's process sees no judge and no reference process.
    ev = verdict("    import os\n    others = [p for p in os.listdir('/proc') if p.isdigit()]\n"
                 "    if len(others) > 4:\n        raise RuntimeError(f'sees {len(others)} processes')\n")
    assert ev.status is EvaluationStatus.PASSED, ev.log
