"""A workload whose first timing is unstable is timed once more before it is called
unstable (`BenchConfig.rerun_unstable`), except with the screening budget, whose figure a
search re-times in full whenever it matters."""

from __future__ import annotations

import pytest


BIMODAL = """
import time
import torch

_calls = [0]


def run(x, weight):
    # Honest, but every other call also sleeps 3 ms: no median of its timings is stable.
    _calls[0] += 1
    if _calls[0] % 2:
        time.sleep(0.003)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
"""


@pytest.mark.parametrize("screening", [False, True])
def test_an_unstable_first_timing_is_re_run_except_in_a_screening(screening):
    from exploits import RMSNORM

    from solforge.bench import BenchConfig, TimingBudget, evaluate
    from solforge.spec import EvaluationStatus, Solution, Workload

    sol = Solution.model_validate({
        "name": "bimodal", "definition": RMSNORM.name, "author": "guard-tests",
        "spec": {"language": "pytorch", "entry_point": "main.py::run", "destination_passing_style": False,
                 "target_hardware": ["cpu"]},
        "sources": [{"path": "main.py", "content": BIMODAL}]})
    workload = Workload.model_validate({"uuid": "bimodal", "axes": {"tokens": 8},
                                        "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}}})
    config = BenchConfig(trials=3, timing=TimingBudget(warmup_s=0.01, max_time_s=0.3, max_iters=12, min_iters=6))
    if screening:
        config = config.screening("cpu")
    ev = evaluate(RMSNORM, [workload], sol, "cpu", config)[0].evaluation
    assert ev.status is EvaluationStatus.PASSED, (ev.status.value, ev.log[-2000:])
    timing = ev.solforge.timing
    assert timing.unstable
    assert timing.reruns == (0 if screening else 1)
    assert any("not re-run" in w for w in ev.solforge.warnings) is screening
