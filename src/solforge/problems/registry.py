"""The built-in problem set: a dataset directory shipped as package data, and its loader.

`data/` is laid out as FlashInfer-Bench lays out a dataset (`definitions/<op_type>/<name>.json`,
`workloads/<op_type>/<name>.jsonl`), so `solforge.spec.load_dataset(builtin_root())` and
FlashInfer-Bench's own tools read it as they read any other. Each workload carries
solforge's flags: `held_out` (kept from the search, shown only to the final gate) and
`smoke` (CPU-sized: the definition's const axes, var axes scaled down).

The one rule of which workloads a device runs lives here too (`default_selection`,
`split_workloads`): the bench command, the search, its baselines and the agents all
ask it, so the workloads an agent is told about are the ones it is measured on.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path

from solforge.spec import Dataset, Definition, SpecError, Workload, load_dataset

# Names accepted by `select_workloads`, each with the workloads it keeps.
WORKLOAD_SELECTIONS: dict[str, str] = {
    "all": "every real-size workload (search and held-out; smoke workloads excluded)",
    "search": "real-size workloads the search may see (not held-out, not smoke)",
    "held-out": "held-out workloads only, for the final gate",
    "smoke": "CPU-sized smoke workloads only",
}


def builtin_root() -> Path:
    """The directory of the built-in dataset (a FlashInfer-Bench dataset directory)."""
    return Path(__file__).resolve().parent / "data"


@functools.cache
def builtin_dataset() -> Dataset:
    """The built-in dataset, loaded once per process.

    Callers share the cached objects: copy a Definition or Workload before changing it
    (`load_builtin` hands out copies). Raises SpecError (one line naming the file) when
    the shipped data is malformed, which the package's tests rule out.
    """
    return load_dataset(builtin_root())


def builtin_names() -> list[str]:
    """Names of the built-in definitions, sorted."""
    return sorted(builtin_dataset().definitions)


def load_builtin(name: str) -> tuple[Definition, list[Workload]]:
    """One built-in definition and all its workloads (search, held-out and smoke, in file
    order), as copies the caller may change.

    Raises SpecError `unknown problem 'x'; did you mean 'y'? (...)`: up to three close
    names (difflib's ratio >= 0.6), and where to see all of them (one line, however large
    the suite grows).
    """
    ds = builtin_dataset()
    if name not in ds.definitions:
        names = builtin_names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SpecError(f"unknown problem '{name}'{hint} (`solforge problems list` shows the {len(names)} "
                        "built-in problems)")
    definition = ds.definitions[name].model_copy(deep=True)
    workloads = [w.model_copy(deep=True) for w in ds.workloads.get(name, [])]
    return definition, workloads


def select_workloads(workloads: list[Workload], which: str) -> list[Workload]:
    """The workloads of one selection, in their given order.

    `which` is one of WORKLOAD_SELECTIONS: "all" (every non-smoke workload), "search"
    (non-smoke and not held-out), "held-out" (held-out only) or "smoke" (smoke only).
    Raises SpecError for any other name.
    """
    if which == "all":
        return [w for w in workloads if not w.smoke]
    if which == "search":
        return [w for w in workloads if not w.smoke and not w.held_out]
    if which == "held-out":
        return [w for w in workloads if w.held_out]
    if which == "smoke":
        return [w for w in workloads if w.smoke]
    raise SpecError(f"workload selection: unknown '{which}' (expected one of: {', '.join(WORKLOAD_SELECTIONS)})")


def _is_cpu(device: object) -> bool:
    # a device string ("cpu", "cuda", "cuda:1") or anything whose str() is one
    return str(device).split(":")[0] == "cpu"


def default_selection(device: object, workloads: list[Workload]) -> str:
    """The selection a device runs by default: "smoke" on the CPU when the definition has
    CPU-sized workloads (real sizes take minutes per candidate there), else "search"."""
    return "smoke" if _is_cpu(device) and any(w.smoke for w in workloads) else "search"


@dataclass(frozen=True)
class WorkloadSplit:
    """The workloads of one search on one device."""

    search: list[Workload]  # what operators see and fitness is computed on; never a held-out one
    held_out: list[Workload]  # what only the final gate runs


def split_workloads(workloads: list[Workload], device: object) -> WorkloadSplit:
    """Search and held-out workloads of a search on `device` ("cpu", "cuda", "cuda:N").

    Search: the `default_selection` of the device without the held-out workloads (the
    smoke workloads on a CPU when there are any, else the real-size ones). Held-out: the
    held-out workloads of the same size class (smoke or real) when there are any, else
    every held-out workload, so a definition whose held-out workloads are all real-size
    still gets its gate on the CPU.
    """
    which = default_selection(device, workloads)
    search = [w for w in select_workloads(workloads, which) if not w.held_out]
    held = select_workloads(workloads, "held-out")
    same_size = [w for w in held if w.smoke == (which == "smoke")]
    return WorkloadSplit(search=search, held_out=same_size or held)


def resolve_problem(name: str, dataset: str | Path | None = None) -> tuple[Definition, list[Workload], Path]:
    """(definition, its workloads, the dataset root their safetensors paths are relative to,
    as an absolute path: the harness's processes change directory): definition `name` of
    the FlashInfer-Trace dataset directory `dataset` when given, else of the built-in
    suite. Raises SpecError for an unknown name or a malformed dataset."""
    definition, workloads, root, _ = load_problem(name, dataset)
    return definition, workloads, root


def load_problem(name: str, dataset: str | Path | None = None) -> tuple[Definition, list[Workload], Path, list]:
    """`resolve_problem`, and the dataset's own solutions of the definition (none for the
    built-in suite). Raises SpecError for an unknown name or a malformed dataset."""
    if dataset is not None:
        root = Path(dataset).expanduser().resolve()
        ds = load_dataset(root)
        return ds.definition(name), list(ds.workloads.get(name, [])), root, list(ds.solutions.get(name, []))
    definition, workloads = load_builtin(name)
    return definition, workloads, builtin_root().resolve(), []
