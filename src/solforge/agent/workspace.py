"""The candidate's workspace: a temporary directory holding its sources, and the
SEARCH/REPLACE patches the agent edits them with.

Every regular file under the workspace is a source of the candidate (hidden entries,
`__pycache__` and compiled files aside), so a file the agent writes is part of the
solution it submits. Paths are relative and stay inside the workspace.

The patch format (the same as aider's, which coding models know):

    kernel.py
    <<<<<<< SEARCH
    exact lines of the current file
    =======
    the lines that replace them
    >>>>>>> REPLACE

The line before each `<<<<<<< SEARCH` names the file. SEARCH must match whole lines of
the file, exactly (whitespace included), and exactly once; an empty SEARCH creates the
file, which must not exist yet. Blocks apply in order, each to the file as the
previous blocks left it, and a patch applies entirely or not at all: any block that
does not match exactly once is an error naming the block, and no file changes.
"""

from __future__ import annotations

import difflib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from solforge.spec import Solution, SourceFile

MAX_FILE_BYTES = 256 * 1024  # a kernel source is a few KB; anything this big is a mistake
MAX_FILES = 32

_SEARCH, _DIVIDER, _REPLACE = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"


class WorkspaceError(Exception):
    """A workspace operation the agent asked for cannot be done; the message says why."""


class PatchError(WorkspaceError):
    """A patch that does not parse or does not apply; nothing was changed."""


@dataclass(frozen=True)
class PatchBlock:
    path: str
    search: str  # "" creates the file
    replace: str
    index: int  # 1-based position in the patch, for error messages


def parse_patch(text: str) -> list[PatchBlock]:
    """The SEARCH/REPLACE blocks of `text` (format in the module docstring).
    Raises PatchError for a block without a path line, divider or end marker, or no block."""
    lines = text.splitlines()
    blocks: list[PatchBlock] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != _SEARCH:
            i += 1
            continue
        n = len(blocks) + 1
        path = lines[i - 1].strip().strip("`").strip() if i > 0 else ""
        if not path or path.startswith(("<<<<<<<", ">>>>>>>", "=======")):
            raise PatchError(f"block {n}: the line before '{_SEARCH}' must name the file")
        try:
            mid = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == _DIVIDER)
            end = next(j for j in range(mid + 1, len(lines)) if lines[j].strip() == _REPLACE)
        except StopIteration:
            raise PatchError(f"block {n} ({path}): expected '{_DIVIDER}' and then '{_REPLACE}'") from None
        blocks.append(PatchBlock(path, "\n".join(lines[i + 1:mid]), "\n".join(lines[mid + 1:end]), n))
        i = end + 1
    if not blocks:
        raise PatchError(f"no SEARCH/REPLACE block found (a block starts with a file path line, then '{_SEARCH}')")
    return blocks


def _line_matches(text: str, search: str) -> list[int]:
    """Start offsets where `search` matches whole lines of `text`."""
    out, start = [], text.find(search)
    while start != -1:
        end = start + len(search)
        if (start == 0 or text[start - 1] == "\n") and (end == len(text) or text[end] == "\n"):
            out.append(start)
        start = text.find(search, start + 1)
    return out


def _closest(text: str, search: str) -> str:
    first = next((line for line in search.splitlines() if line.strip()), "")
    lines = text.splitlines()
    near = difflib.get_close_matches(first, lines, n=1, cutoff=0.6)
    if not near:
        return ""
    return f"; the closest line to its first line is line {lines.index(near[0]) + 1}: {near[0].strip()!r}"


def apply_blocks(files: dict[str, str], blocks: list[PatchBlock]) -> dict[str, str]:
    """The contents of the files the blocks change, after applying them in order to
    `files` (path -> text). Raises PatchError naming the first block that does not apply."""
    changed: dict[str, str] = {}
    for b in blocks:
        current = changed.get(b.path, files.get(b.path))
        where = f"block {b.index} ({b.path})"
        if not b.search.strip():
            if current is not None:
                raise PatchError(f"{where}: an empty SEARCH creates a file, and {b.path} exists")
            changed[b.path] = b.replace + "\n"
            continue
        if current is None:
            raise PatchError(f"{where}: no such file (files: {', '.join(sorted(files)) or 'none'})")
        hits = _line_matches(current, b.search)
        if len(hits) != 1:
            what = "does not match" if not hits else f"matches {len(hits)} times"
            hint = _closest(current, b.search) if not hits else "; add lines around it to make it unique"
            raise PatchError(f"{where}: SEARCH {what} (it must match whole lines exactly once){hint}")
        start = hits[0]
        changed[b.path] = current[:start] + b.replace + current[start + len(b.search):]
    return changed


def check_relative(path: str) -> str:
    """`path` as a clean relative POSIX path. Raises WorkspaceError for an absolute path,
    '..', a hidden component or an empty name."""
    p = PurePosixPath(path.strip())
    if not path.strip() or p.is_absolute() or any(part in ("..", "") or part.startswith(".") for part in p.parts):
        raise WorkspaceError(f"path '{path}': expected a relative path inside the workspace, "
                             "without '..' or hidden parts")
    return p.as_posix()


class Workspace:
    """A directory holding one candidate's sources."""

    def __init__(self, root: Path, base: Solution, owned: bool = False) -> None:
        self.root = root
        self.base = base  # the parent: language, entry point, definition
        self._owned = owned

    @classmethod
    def create(cls, solution: Solution, parent_dir: str | Path | None = None) -> Workspace:
        """A fresh temporary directory with `solution`'s sources written in it."""
        root = Path(tempfile.mkdtemp(prefix="solforge-agent-", dir=parent_dir))
        ws = cls(root, solution, owned=True)
        for src in solution.sources:
            ws.write(src.path, src.content)
        return ws

    def cleanup(self) -> None:
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def files(self) -> list[str]:
        """The source paths, sorted."""
        out = []
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root)
            if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts) \
                    and p.suffix not in (".pyc", ".so", ".o"):
                out.append(rel.as_posix())
        return out

    def read(self, path: str) -> str:
        """A source's text. Raises WorkspaceError for a bad path or a missing file."""
        target = self.root / check_relative(path)
        if not target.is_file():
            raise WorkspaceError(f"{path}: no such file (files: {', '.join(self.files()) or 'none'})")
        return target.read_text(errors="replace")

    def write(self, path: str, content: str) -> None:
        """Create or overwrite a source. Raises WorkspaceError for a bad path, a file over
        MAX_FILE_BYTES, or one file more than MAX_FILES."""
        rel = check_relative(path)
        if len(content.encode()) > MAX_FILE_BYTES:
            raise WorkspaceError(f"{path}: {len(content.encode())} bytes, over the limit of {MAX_FILE_BYTES}")
        target = self.root / rel
        if not target.exists() and len(self.files()) >= MAX_FILES:
            raise WorkspaceError(f"{path}: the workspace already holds {MAX_FILES} files")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def apply_patch(self, patch: str) -> list[str]:
        """Apply SEARCH/REPLACE blocks (module docstring); returns the changed paths.
        Raises PatchError (nothing changed) when any block does not apply."""
        blocks = parse_patch(patch)
        for b in blocks:
            try:
                check_relative(b.path)
            except WorkspaceError as exc:
                raise PatchError(f"block {b.index}: {exc}") from None
        current = {p: self.read(p) for p in {b.path for b in blocks} if (self.root / p).is_file()}
        changed = apply_blocks(current, blocks)
        for path, text in changed.items():
            self.write(path, text)
        return sorted(changed)

    def sources(self) -> list[SourceFile]:
        return [SourceFile(path=p, content=self.read(p)) for p in self.files()]

    def solution(self, name: str, author: str, description: str = "") -> Solution:
        """The workspace as a Solution with the base's spec (language, entry point, DPS)."""
        return self.base.model_copy(update={
            "name": name, "author": author, "description": description or None, "sources": self.sources(),
        }, deep=True)  # fmt: skip


def safe_name(text: str) -> str:
    """`text` reduced to the characters solution names use."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "candidate"
