"""Red-team kernels for the three-process judge (issue 8), one or more per class of
reward hack, plus the honest idioms that must pass.

Every `*.py` file here (other than this one) is the source of one solution of the
guard tests' `RMSNORM` (`exploits.RMSNORM`: `run(x, weight) -> y`, float32, hidden 64).
The file's first comment line names the class it attacks and the verdict it is after.
`test_judge_exploits.py` evaluates each one through `solforge.bench.evaluate`.
"""

from __future__ import annotations

from pathlib import Path

from exploits import RMSNORM

from solforge.spec import Solution, Workload

HERE = Path(__file__).parent

__all__ = ["HERE", "RMSNORM", "WORKLOAD", "solution", "source"]

# One small workload for every red-team case: 8 tokens of RMSNORM's 64-wide rows.
WORKLOAD = Workload.model_validate({
    "uuid": "redteam", "axes": {"tokens": 8},
    "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}},
})


def source(name: str) -> str:
    """The source text of red-team kernel `name` (file stem)."""
    return (HERE / f"{name}.py").read_text()


def solution(name: str, language: str = "pytorch") -> Solution:
    """A one-file solution of RMSNORM whose `main.py` is red-team kernel `name`,
    declared in `language` ('pytorch', 'numba', 'triton')."""
    return Solution.model_validate({
        "name": name, "definition": RMSNORM.name, "author": "red-team",
        "spec": {"language": language, "entry_point": "main.py::run", "destination_passing_style": False,
                 "target_hardware": ["cpu"]},
        "sources": [{"path": "main.py", "content": source(name)}],
    })
