"""Winners as deployable kernels: a Solution, its Definition, and the shapes it was proven on.

`solforge evolve` exports a winner to `<run>/winner/` (solution.json, its sources, and
traces.jsonl of the search and held-out workloads it passed). A winner is named by the
run folder, the winner folder, or the solution JSON itself.

The definition is looked up in this order: a `definition.json` beside the solution or in
the run folder (`solforge optimize` writes one), the given datasets (e.g. a `solforge
profile` output folder), then the built-in suite.

The shape buckets are the var-axis values of the workloads whose traces PASSED: the
kernel is dispatched near those shapes only (see `dispatch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from solforge.spec import (
    Definition,
    EvaluationStatus,
    Language,
    Solution,
    SpecError,
    check_solution,
    load_dataset,
    load_definition,
    load_solution,
    read_jsonl,
)

WINNER_DIR = "winner"
DEFINITION_FILE = "definition.json"


@dataclass
class Winner:
    """One deployable solution."""

    definition: Definition
    solution: Solution
    buckets: list[dict[str, int]]  # var-axis values of the workloads it passed, one dict per workload
    source: Path | None = None  # where it was loaded from
    dtypes: set[str] = field(default_factory=set)  # dtypes of the definition's float inputs

    @property
    def name(self) -> str:
        return self.solution.name

    @property
    def device(self) -> str:
        """'cpu' or 'cuda': where the solution runs (numba: cpu; triton, cuda: cuda; pytorch: its
        target_hardware, 'any' when none is given)."""
        lang = self.solution.spec.language
        if lang is Language.numba:
            return "cpu"
        if lang in (Language.triton, Language.cuda):
            return "cuda"
        hw = [h.lower() for h in self.solution.spec.target_hardware]
        if hw and all(h.startswith("cpu") for h in hw):
            return "cpu"
        if hw and all(not h.startswith("cpu") for h in hw):
            return "cuda"
        return "any"


def _solution_path(path: Path) -> Path:
    if path.is_file():
        return path
    if (path / "solution.json").is_file():
        return path / "solution.json"
    if (path / WINNER_DIR / "solution.json").is_file():
        return path / WINNER_DIR / "solution.json"
    if path.is_dir():
        raise SpecError(f"{path}: no winner (no {WINNER_DIR}/solution.json: the run exported none; a run exports "
                        "one only when a candidate passes every search and held-out workload)")
    raise SpecError(f"{path}: no such run, winner folder or solution file")


def find_definition(name: str, near: list[Path], datasets: list[Path]) -> Definition:
    """The definition called `name`: a definition.json in `near`, a dataset, or the built-in suite."""
    for folder in near:
        p = folder / DEFINITION_FILE
        if p.is_file():
            d = load_definition(p)
            if d.name == name:
                return d
    for root in datasets:
        ds = load_dataset(root)
        if name in ds.definitions:
            return ds.definitions[name]
    from solforge.problems import builtin_dataset

    ds = builtin_dataset()
    if name in ds.definitions:
        return ds.definitions[name].model_copy(deep=True)
    hint = " or --dataset" if not datasets else ""
    raise SpecError(f"definition: unknown definition '{name}' (not built in, not in {', '.join(map(str, datasets)) or 'any dataset'}; "
                    f"pass the profile folder that made it with --dataset{hint})")


def load_winner(path: str | Path, datasets: list[str | Path] = ()) -> Winner:
    """Load one winner (see the module docstring). Raises SpecError, one line naming the path,
    when there is no winner, the definition is unknown, or the solution does not match it."""
    path = Path(path)
    sol_path = _solution_path(path)
    near = [sol_path.parent, sol_path.parent.parent]
    solution = load_solution(sol_path)
    try:
        definition = find_definition(solution.definition, near, [Path(d) for d in datasets])
    except SpecError as exc:
        raise SpecError(f"{sol_path}: {exc}") from None
    problems = check_solution(definition, solution)
    if problems:
        raise SpecError(f"{sol_path}: signature mismatch with definition '{definition.name}': {problems[0]}")
    buckets: list[dict[str, int]] = []
    traces = sol_path.parent / "traces.jsonl"
    if traces.is_file():
        from solforge.spec import Trace

        for t in read_jsonl(traces, Trace):
            if t.evaluation is not None and t.evaluation.status is EvaluationStatus.PASSED and t.workload.axes:
                if t.workload.axes not in buckets:
                    buckets.append(dict(t.workload.axes))
    dtypes = {s.dtype.value for s in definition.inputs.values() if s.dtype.is_floating}
    return Winner(definition, solution, buckets, sol_path, dtypes)


def load_winners(paths: list[str | Path], datasets: list[str | Path] = ()) -> list[Winner]:
    """Each of `paths` as a winner (Winner objects pass through); SpecError at the first bad one."""
    out = []
    for p in paths:
        out.append(p if isinstance(p, Winner) else load_winner(p, datasets))
    return out
