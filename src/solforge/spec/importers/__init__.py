"""Importers: other projects' problem sets as solforge datasets.

- `kernelbench`: KernelBench problem files (`Model(nn.Module)`, `get_inputs()`,
  `get_init_inputs()`) become Definitions and Workloads; `ModelNew` files become Solutions.
- `flashinfer_trace`: FlashInfer-Trace and SOL-ExecBench dataset directories, normalized
  to solforge's reading of the schema.

An importer returns an `ImportResult`: the `Dataset` it built, the blob files to copy,
and an `ImportReport` that names, file by file, what was imported, what was skipped and
why, and what was changed on the way (a dtype spelling, a default filled in, a field
solforge has no place for, kept in the report with its value). `write_import` writes the
dataset with `write_dataset`, copies the blobs, writes `import-report.json`, and loads
the output back with `load_dataset`, so that what was written is known to load.
"""

from __future__ import annotations

import enum
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solforge.spec.dataset import Dataset, load_dataset, write_dataset
from solforge.spec.errors import SpecError

REPORT_FILE = "import-report.json"


class ItemKind(str, enum.Enum):
    """What an imported item became in the dataset."""

    definition = "definition"
    workload = "workload"
    solution = "solution"
    trace = "trace"
    blob = "blob"


@dataclass(frozen=True)
class Imported:
    """One imported item: the file (or `file:line`) it came from, its kind and its name."""

    path: str
    kind: ItemKind
    name: str


@dataclass(frozen=True)
class Skipped:
    """One file (or `file:line`) that was not imported, and why, in one line."""

    path: str
    reason: str


@dataclass(frozen=True)
class Ignored:
    """A file left out on purpose (a duplicate imported once, a file of neither layout), and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Note:
    """A change made while importing, or a field solforge has no place for; `value`
    (any JSON value) keeps what the field held, so that the report loses nothing."""

    path: str
    message: str
    value: Any = None


@dataclass
class ImportReport:
    """What an import did, item by item: every file read is imported, skipped (it should
    have been importable and was not) or ignored (left out on purpose). `complete` when
    nothing was skipped."""

    importer: str
    sources: list[str]
    imported: list[Imported] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.skipped

    @property
    def exit_code(self) -> int:
        """0 when everything was imported, 1 when anything was skipped."""
        return 0 if self.complete else 1

    def count(self, kind: ItemKind) -> int:
        return sum(1 for item in self.imported if item.kind is kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "importer": self.importer,
            "sources": self.sources,
            "complete": self.complete,
            "imported": [{"path": i.path, "kind": i.kind.value, "name": i.name} for i in self.imported],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "ignored": [{"path": i.path, "reason": i.reason} for i in self.ignored],
            "notes": [
                {"path": n.path, "message": n.message, **({"value": n.value} if n.value is not None else {})}
                for n in self.notes
            ],
        }


@dataclass
class ImportResult:
    """An importer's output before anything is written."""

    dataset: Dataset
    report: ImportReport
    # destination relative to the output root (always under blob/) -> source file
    blobs: dict[str, Path] = field(default_factory=dict)
    # destination relative to the output root (under blob/) -> tensors made by the import,
    # written there as one safetensors file
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_out_dir(out: str | Path) -> Path:
    """`out` as a Path, after checking that it is a new or empty directory.

    Raises SpecError when `out` is a file or a directory with anything in it: an import
    never mixes its files with an existing dataset's.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {out}: is a file, expected a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        raise SpecError(f"--out {out}: is not empty; choose a new directory")
    return out


def write_import(result: ImportResult, out: str | Path) -> ImportReport:
    """Write `result` under `out` and return its report.

    Writes the dataset (`write_dataset`), copies each blob to its relative destination,
    saves the tensors the import made as safetensors, writes `import-report.json`, then
    loads `out` with `load_dataset`. Raises SpecError
    when `out` is not a new or empty directory; an output that does not load back is a
    bug of the importer and fails an assertion.
    """
    out = check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    write_dataset(result.dataset, out)
    for rel, src in sorted(result.blobs.items()):
        assert rel.startswith("blob/"), rel
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    if result.tensors:
        from safetensors.torch import save_file

        for rel, tensors in sorted(result.tensors.items()):
            assert rel.startswith("blob/"), rel
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(out / rel))
    (out / REPORT_FILE).write_text(json.dumps(result.report.to_json(), indent=2) + "\n")
    written = load_dataset(out)
    assert set(written.definitions) == set(result.dataset.definitions), "an imported definition did not load back"
    return result.report


__all__ = [
    "REPORT_FILE",
    "ImportReport",
    "ImportResult",
    "Ignored",
    "Imported",
    "ItemKind",
    "Note",
    "Skipped",
    "check_out_dir",
    "write_import",
]
