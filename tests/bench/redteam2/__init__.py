"""Red team, round 2, against the three-process judge: new attacks by a team that has
read the harness's source, one or more per class.

Every `*.py` file here (other than this one) is the source of one solution of the guard
tests' `RMSNORM` (`exploits.RMSNORM`: `run(x, weight) -> y`, float32, hidden 64). The
file's first comment line names the class it attacks and the verdict it is after.
`test_judge_exploits_2.py` evaluates each one through `solforge.bench.evaluate` (or
`run_bench`, for the cases that attack the next solution or the judge's own process, in a
Python process of their own). `LANGUAGES` names the cases declared in another language
than pytorch.
"""

from __future__ import annotations

from pathlib import Path

from exploits import RMSNORM

from solforge.spec import Solution, Workload

HERE = Path(__file__).parent

__all__ = ["DPS", "HERE", "LANGUAGES", "RMSNORM", "WORKLOAD", "solution", "source"]

# One small workload for every case: 8 tokens of RMSNORM's 64-wide rows.
WORKLOAD = Workload.model_validate({
    "uuid": "redteam2", "axes": {"tokens": 8},
    "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}},
})

LANGUAGES: dict[str, str] = {  # case -> declared language, when not pytorch
    "decoy_numba_objmode_torch": "numba",
    "decoy_numba_burn_when_checked": "numba",
    "decoy_counter_from_module": "numba",
}
DPS: frozenset[str] = frozenset({"dps_skips_last_row"})  # cases declared destination-passing: run(x, weight, y)


def source(name: str) -> str:
    """The source text of red-team kernel `name` (file stem)."""
    return (HERE / f"{name}.py").read_text()


def solution(name: str, language: str | None = None) -> Solution:
    """A one-file solution of RMSNORM whose `main.py` is red-team kernel `name`, declared
    in `language` (default: `LANGUAGES`, else 'pytorch'), destination-passing when the case
    is in `DPS`."""
    return Solution.model_validate({
        "name": name, "definition": RMSNORM.name, "author": "red-team-2",
        "spec": {"language": language or LANGUAGES.get(name, "pytorch"), "entry_point": "main.py::run",
                 "destination_passing_style": name in DPS, "target_hardware": ["cpu"]},
        "sources": [{"path": "main.py", "content": source(name)}],
    })
