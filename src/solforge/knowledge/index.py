"""Full-text search over the knowledge base: playbook sections and seed kernels, in SQLite FTS5.

One FTS5 table holds a document per playbook section (each `## ` heading of each
`playbook/*.md`, plus the file's opening paragraph) and one per seed kernel (its
metadata, module docstring and source). Ranking is SQLite's BM25 with the title
weighted above the tags, the prose and the code. Queries are plain words: they are
tokenized, quoted (so FTS5 operators in them are taken literally), and matched first
with every word required, then, if that finds nothing, with any word.

The default database lives in `$SOLFORGE_CACHE_DIR/knowledge/` (else
`platformdirs.user_cache_dir("solforge")/knowledge/`) and is rebuilt whenever the
sha256 of the shipped playbook and seed files (and of this index's schema version)
differs from the one recorded in it. A rebuild writes a temporary file and renames it
over the old one, so concurrent readers see the old or the new index, never half of one.

A playbook file starts with `# Title`, then `Applies to: op_type, ...` and
`Languages: triton, ...` lines that the `op_type` and `language` filters use.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from solforge.cache import cache_root
from solforge.knowledge.seed_kernels import SeedKernel, load_seed, shipped_seed_paths
from solforge.spec import SpecError

PLAYBOOK_ROOT = Path(__file__).resolve().parent / "playbook"
KNOWLEDGE_ROOT = PLAYBOOK_ROOT.parent
INDEX_SCHEMA_VERSION = 1  # bump when the table layout or the document text changes
INDEX_FILENAME = "index.sqlite3"

# BM25 weights of the indexed columns, in order: heading, tags, text, code. A playbook
# section's heading is its own (the file's title goes in its tags, so that the title
# words do not rank every section of one file the same).
_BM25_WEIGHTS = (8.0, 4.0, 2.0, 0.5)
_SNIPPET_COLUMN = 2  # snippets come from the prose (section text, seed docstring)
_SNIPPET_TOKENS = 16


class KnowledgeKind(str, enum.Enum):
    """What a knowledge document is."""

    playbook = "playbook"  # a section of an optimization playbook file
    seed = "seed"  # a seed kernel


@dataclass(frozen=True)
class KnowledgeHit:
    """One search result."""

    title: str  # "Coalescing global memory access: When it pays", or "triton/softmax_online (online_one_pass)"
    kind: KnowledgeKind
    path: str  # relative to the knowledge package: "playbook/x.md#slug" or "seeds/triton/x.py"
    snippet: str  # the best-matching passage, matched terms in [brackets]
    score: float  # BM25 relevance, higher is better (SQLite's bm25() negated)
    op_types: tuple[str, ...]  # op types the document applies to
    languages: tuple[str, ...]  # languages it applies to


@dataclass(frozen=True)
class PlaybookSection:
    """One indexed section of a playbook file."""

    file_title: str  # the file's `# Title`
    heading: str | None  # the section's `## Heading`; None for the opening paragraph
    path: str  # "playbook/<file>.md" or "playbook/<file>.md#<heading-slug>"
    op_types: tuple[str, ...]
    languages: tuple[str, ...]
    text: str

    @property
    def title(self) -> str:
        return f"{self.file_title}: {self.heading}" if self.heading else self.file_title


@dataclass(frozen=True)
class IndexInfo:
    """What `build_index` wrote."""

    path: Path
    documents: int  # playbook sections + seed kernels
    content_hash: str  # sha256 of the shipped files and INDEX_SCHEMA_VERSION


def playbook_paths() -> list[Path]:
    """Every playbook file shipped in this package, sorted."""
    return sorted(PLAYBOOK_ROOT.glob("*.md"))


def playbook_sections(path: str | Path) -> list[PlaybookSection]:
    """The sections of one playbook file: its opening paragraph, then one per `## ` heading.

    Raises SpecError naming the file when the `# Title`, `Applies to:` or `Languages:`
    line is missing.
    """
    path = Path(path)
    rel = _relative(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("# "):
        raise SpecError(f"{rel}: line 1: expected '# Title'")
    title = lines[0][2:].strip()
    header: dict[str, tuple[str, ...]] = {}
    for line in lines[1:]:
        if line.startswith("## "):
            break
        key, sep, value = line.partition(":")
        if sep and key in ("Applies to", "Languages"):
            header[key] = tuple(v.strip() for v in value.split(",") if v.strip())
    for key in ("Applies to", "Languages"):
        if not header.get(key):
            raise SpecError(f"{rel}: '{key}:': expected a line '{key}: a, b, ...' before the first '## ' heading")

    sections: list[PlaybookSection] = []
    heading, body = None, []

    def flush() -> None:
        text = "\n".join(line for line in body if not line.startswith(("Applies to:", "Languages:"))).strip()
        if text:
            sections.append(
                PlaybookSection(
                    file_title=title,
                    heading=heading,
                    path=f"{rel}#{_slug(heading)}" if heading else rel,
                    op_types=header["Applies to"],
                    languages=header["Languages"],
                    text=text,
                )
            )

    for line in lines[1:]:
        if line.startswith("## "):
            flush()
            heading, body = line[3:].strip(), []
        else:
            body.append(line)
    flush()
    return sections


def content_hash() -> str:
    """sha256 over INDEX_SCHEMA_VERSION and every shipped playbook and seed file (path and bytes)."""
    digest = hashlib.sha256(f"schema {INDEX_SCHEMA_VERSION}\n".encode())
    for path in [*playbook_paths(), *shipped_seed_paths()]:
        digest.update(_relative(path).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_index(db_path: str | Path) -> IndexInfo:
    """Build the FTS5 index of the shipped playbook and seeds at `db_path`, replacing any
    file there (atomically: a temporary file renamed over it).

    Raises SpecError when a shipped playbook or seed file is malformed (the package's
    tests rule that out), sqlite3.OperationalError when this SQLite lacks FTS5.
    """
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    digest = content_hash()
    rows = [_playbook_row(s) for p in playbook_paths() for s in playbook_sections(p)]
    rows += [_seed_row(load_seed(p)) for p in shipped_seed_paths()]
    fd, tmp = tempfile.mkstemp(prefix=db_path.name + ".", suffix=".tmp", dir=db_path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            with conn:
                conn.execute(
                    "CREATE VIRTUAL TABLE docs USING fts5(heading, tags, text, code, title UNINDEXED, kind UNINDEXED, "
                    "path UNINDEXED, op_types UNINDEXED, languages UNINDEXED, tokenize = 'porter unicode61')"
                )
                conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("content_hash", digest), ("schema_version", str(INDEX_SCHEMA_VERSION))],
                )
        finally:
            conn.close()
        os.replace(tmp, db_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return IndexInfo(path=db_path, documents=len(rows), content_hash=digest)


def default_index_path() -> Path:
    """`<cache root>/knowledge/index.sqlite3`, the cache root being `solforge.cache.cache_root()`
    (`$SOLFORGE_CACHE_DIR`, else `platformdirs.user_cache_dir("solforge")`)."""
    return cache_root() / "knowledge" / INDEX_FILENAME


def ensure_index(db_path: str | Path | None = None) -> Path:
    """The index at `db_path` (default: `default_index_path()`), built or rebuilt first when
    it is missing, unreadable, or records another content hash than the shipped files'."""
    path = Path(db_path) if db_path is not None else default_index_path()
    if _recorded_hash(path) != content_hash():
        build_index(path)
    return path


def search_knowledge(
    query: str,
    kind: str | KnowledgeKind | None = None,
    op_type: str | None = None,
    language: str | None = None,
    limit: int = 5,
    db_path: str | Path | None = None,
) -> list[KnowledgeHit]:
    """The best `limit` documents for `query`, best first; empty when nothing matches.

    `query` is plain words (punctuation and FTS5 syntax are ignored): documents holding
    every word are returned if there are any, else documents holding any of them, ranked
    by BM25 (words are stemmed: "tiles" finds "tiling"). `kind` keeps playbook sections
    or seeds only; `op_type` and `language` keep seeds of that op type or language and
    playbook sections whose `Applies to:` / `Languages:` lines name it. The index at
    `db_path` (default: the user cache) is built or rebuilt first if stale (see
    `ensure_index`). Raises ValueError for an unknown kind or a limit below 1.
    """
    if limit < 1:
        raise ValueError(f"limit: expected at least 1, got {limit}")
    kind_value = KnowledgeKind(kind).value if kind is not None else None
    words = re.findall(r"\w+", query.lower())
    if not words:
        return []
    path = ensure_index(db_path)
    quoted = [f'"{w}"' for w in words]
    conn = _connect_read_only(path)
    try:
        for match in (" ".join(quoted), " OR ".join(quoted)):
            hits = _search(conn, match, kind_value, op_type, language, limit)
            if hits or len(words) == 1:
                return hits
        return []
    finally:
        conn.close()


def _search(
    conn: sqlite3.Connection, match: str, kind: str | None, op_type: str | None, language: str | None, limit: int
) -> list[KnowledgeHit]:
    weights = ", ".join(str(w) for w in _BM25_WEIGHTS)
    sql = (
        f"SELECT title, kind, path, snippet(docs, {_SNIPPET_COLUMN}, '[', ']', ' ... ', {_SNIPPET_TOKENS}), "
        f"bm25(docs, {weights}), op_types, languages FROM docs WHERE docs MATCH ?"
    )
    args: list[object] = [match]
    if kind is not None:
        sql += " AND kind = ?"
        args.append(kind)
    # space-delimited lists: instr() matches whole names (LIKE would read '_' as a wildcard)
    if op_type is not None:
        sql += " AND instr(' ' || op_types || ' ', ' ' || ? || ' ') > 0"
        args.append(op_type)
    if language is not None:
        sql += " AND instr(' ' || languages || ' ', ' ' || ? || ' ') > 0"
        args.append(language)
    sql += " ORDER BY bm25(docs, " + weights + ") LIMIT ?"
    args.append(limit)
    return [
        KnowledgeHit(
            title=title,
            kind=KnowledgeKind(kind_),
            path=path,
            snippet=" ".join(snippet.split()),
            score=-float(rank),
            op_types=tuple(op_types.split()),
            languages=tuple(languages.split()),
        )
        for title, kind_, path, snippet, rank, op_types, languages in conn.execute(sql, args)
    ]


def _connect_read_only(path: Path) -> sqlite3.Connection:
    # a percent-encoded file URI: '?', '#' or '%' in the path must not read as URI syntax
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def _recorded_hash(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        conn = _connect_read_only(path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'content_hash'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None  # not an index of ours (or damaged): rebuild
    return row[0] if row else None


def _playbook_row(section: PlaybookSection) -> tuple[str, ...]:
    return (
        section.heading or section.file_title, section.file_title if section.heading else "", section.text, "",
        section.title,
        KnowledgeKind.playbook.value, section.path, " ".join(section.op_types), " ".join(section.languages),
    )


def _seed_row(seed: SeedKernel) -> tuple[str, ...]:
    tags = " ".join(
        [seed.op_type, seed.family, seed.language.value, *seed.techniques, seed.description, *seed.param_space]
    )
    title = f"{seed.name} ({seed.family})"
    return (
        title, tags, seed.docstring, _code_without_docstring(seed.source), title,
        KnowledgeKind.seed.value, _relative(seed.path), seed.op_type, seed.language.value,
    )


def _code_without_docstring(source: str) -> str:
    """The source after its module docstring (indexed apart, in the text column)."""
    match = re.match(r'\s*(?:"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\')', source)
    return source[match.end():] if match else source


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(KNOWLEDGE_ROOT).as_posix()
    except ValueError:
        return str(path)


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")

