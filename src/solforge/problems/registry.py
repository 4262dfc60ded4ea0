"""The built-in problem set: a dataset directory shipped as package data, and its loader.

`data/` is laid out as FlashInfer-Bench lays out a dataset (`definitions/<op_type>/<name>.json`,
`workloads/<op_type>/<name>.jsonl`), so `solforge.spec.load_dataset(builtin_root())` and
FlashInfer-Bench's own tools read it as they read any other. Each workload carries
solforge's flags: `held_out` (kept from the search, shown only to the final gate) and
`smoke` (CPU-sized: the definition's const axes, var axes scaled down).
"""

from __future__ import annotations

import difflib
import functools
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
