"""A workload whose first timing is unstable is timed once more before it is called
unstable (`BenchConfig.rerun_unstable`), except with the screening budget, whose figure a
search re-times in full whenever it matters."""

from __future__ import annotations

import pytest


NOISY = """
import time
import torch

_calls = [0]


def run(x, weight):
    # Honest, but each call also sleeps 0.5, 1.5 or 4.5 ms in turn: the timed calls are
    # nearly consecutive (the judge draws a profiled one in between now and then), so any
    # five of them span the three, and no median of them is stable. (Sleeping on every
    # other call was not enough: the timed calls could all fall on one parity.)
    _calls[0] += 1
    time.sleep(0.0005 * 3 ** (_calls[0] % 3))
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
"""


@pytest.mark.parametrize("screening", [False, True])
def test_an_unstable_first_timing_is_re_run_except_in_a_screening(screening):
    from exploits import RMSNORM

    from solforge.bench import BenchConfig, TimingBudget, evaluate
    from solforge.spec import EvaluationStatus, Solution, Workload

    sol = Solution.model_validate({
        "name": "noisy", "definition": RMSNORM.name, "author": "guard-tests",
        "spec": {"language": "pytorch", "entry_point": "main.py::run", "destination_passing_style": False,
                 "target_hardware": ["cpu"]},
        "sources": [{"path": "main.py", "content": NOISY}]})
    workload = Workload.model_validate({"uuid": "noisy", "axes": {"tokens": 8},
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
