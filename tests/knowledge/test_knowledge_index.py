"""The playbook's structure, and the FTS5 index over the playbook and the seeds: real
SQLite files under tmp_path, filters, ranking, staleness and rebuilds."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing

import pytest

from solforge.knowledge import (
    KnowledgeKind,
    build_index,
    default_index_path,
    ensure_index,
    load_seeds,
    playbook_paths,
    playbook_sections,
    search_knowledge,
)
from solforge.knowledge import index as index_module

TECHNIQUES = {
    "coalescing",
    "vectorized_access",
    "fusion",
    "online_softmax_and_welford",
    "tiling",
    "software_pipelining",
    "persistent_kernels",
    "split_k",
    "hopper_tma_wgmma",
    "register_pressure_and_occupancy",
    "cpu_numba_kernels",
}
REQUIRED_HEADINGS = {"When it pays", "How to tell from a profile", "Sources"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("knowledge") / "index.sqlite3"
    info = build_index(path)
    assert info.path == path
    return path


def test_the_playbook_covers_every_technique_with_the_required_sections():
    assert {p.stem for p in playbook_paths()} == TECHNIQUES
    for path in playbook_paths():
        sections = playbook_sections(path)
        headings = {s.heading for s in sections}
        assert REQUIRED_HEADINGS <= headings, (path.name, headings)
        assert sections[0].heading is None and len(sections[0].text) > 100  # the opening paragraph
        assert sections[0].op_types and sections[0].languages
        for section in sections:
            assert section.path.startswith(f"playbook/{path.name}")
            assert len(section.text) > 40, (section.path, section.text)
        sources = next(s for s in sections if s.heading == "Sources")
        assert sources.text.count("- ") >= 1


def test_playbook_language_and_op_type_lines_name_known_values():
    seed_op_types = {s.op_type for s in load_seeds()} | {"gqa"}
    for path in playbook_paths():
        section = playbook_sections(path)[0]
        assert set(section.languages) <= {"triton", "cuda", "numba"}, path.name
        assert set(section.op_types) <= seed_op_types, path.name


def test_a_playbook_file_without_its_header_lines_is_rejected(tmp_path):
    path = tmp_path / "x.md"
    path.write_text("# Title\n\nLanguages: triton\n\n## When it pays\n\ntext\n")
    with pytest.raises(ValueError, match="x.md: 'Applies to:'"):
        playbook_sections(path)


def test_build_index_holds_every_section_and_seed(db):
    sections = sum(len(playbook_sections(p)) for p in playbook_paths())
    with closing(sqlite3.connect(db)) as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM docs GROUP BY kind").fetchall())
    assert kinds == {"playbook": sections, "seed": len(load_seeds())}


def test_online_softmax_is_found_in_the_playbook(db):
    hits = search_knowledge("online softmax", kind="playbook", db_path=db)
    assert hits and all(h.kind is KnowledgeKind.playbook for h in hits)
    assert hits[0].path.startswith("playbook/online_softmax_and_welford.md")
    assert "[online]" in hits[0].snippet.lower() or "[softmax]" in hits[0].snippet.lower()
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_softmax_one_pass_finds_the_softmax_seeds(db):
    hits = search_knowledge("softmax one pass", kind="seed", limit=10, db_path=db)
    assert hits[0].path == "seeds/triton/softmax_online.py"
    assert all(h.kind is KnowledgeKind.seed for h in hits)
    only_softmax = search_knowledge("softmax one pass", kind="seed", op_type="softmax", limit=10, db_path=db)
    assert only_softmax and {h.op_types for h in only_softmax} == {("softmax",)}
    assert "seeds/triton/softmax_online.py" in {h.path for h in only_softmax}


def test_filters_by_kind_op_type_and_language(db):
    numba = search_knowledge("bf16 bit conversion", language="numba", limit=20, db_path=db)
    assert numba and all("numba" in h.languages for h in numba)
    assert {h.kind for h in numba} <= {KnowledgeKind.seed, KnowledgeKind.playbook}
    gemm_playbook = search_knowledge("tiles", kind="playbook", op_type="gemm", limit=20, db_path=db)
    assert gemm_playbook and all("gemm" in h.op_types for h in gemm_playbook)
    # op types with an underscore match whole names, not LIKE patterns
    ce = search_knowledge("online", kind="seed", op_type="cross_entropy", limit=20, db_path=db)
    assert {h.path for h in ce} == {"seeds/triton/cross_entropy_online.py", "seeds/numba/cross_entropy_blocks.py"}
    assert search_knowledge("softmax", kind="seed", op_type="no_such_op", db_path=db) == []


def test_gibberish_and_empty_queries_find_nothing(db):
    assert search_knowledge("qwxzv plorkt", db_path=db) == []
    assert search_knowledge("", db_path=db) == []
    assert search_knowledge("  -- ?? ", db_path=db) == []


def test_fts_syntax_in_a_query_is_taken_literally(db):
    # unquoted, these would be FTS5 syntax errors (NEAR, a bare colon, an unbalanced quote)
    assert search_knowledge('NEAR( "split-K: decode', db_path=db)
    hits = search_knowledge("split-K decode", kind="playbook", db_path=db)
    assert hits[0].path.startswith("playbook/split_k.md")


def test_any_word_matches_when_no_document_has_all_of_them(db):
    hits = search_knowledge("wgmma qwxzv", db_path=db)
    assert hits and hits[0].path.startswith("playbook/hopper_tma_wgmma.md")


def test_stemming_matches_word_forms(db):
    assert any(h.path.startswith("playbook/tiling.md") for h in search_knowledge("tiles", db_path=db))


def test_limit_and_kind_are_validated(db):
    assert len(search_knowledge("kernel", limit=3, db_path=db)) == 3
    with pytest.raises(ValueError):
        search_knowledge("kernel", limit=0, db_path=db)
    with pytest.raises(ValueError):
        search_knowledge("kernel", kind="tutorial", db_path=db)


def test_the_default_index_lives_in_the_cache_dir_and_is_rebuilt_when_files_change(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path / "cache"))
    playbook = tmp_path / "playbook"
    shutil.copytree(index_module.PLAYBOOK_ROOT, playbook)
    monkeypatch.setattr(index_module, "PLAYBOOK_ROOT", playbook)
    assert default_index_path() == tmp_path / "cache" / "knowledge" / "index.sqlite3"
    assert not default_index_path().exists()
    assert search_knowledge("zanzibarquux") == []
    assert default_index_path().is_file()
    built_once = default_index_path().stat().st_mtime_ns

    assert ensure_index() == default_index_path()
    assert default_index_path().stat().st_mtime_ns == built_once  # unchanged files: no rebuild

    with (playbook / "fusion.md").open("a") as f:
        f.write("\n## Zanzibar\n\nThe zanzibarquux fusion of two kernels.\n")
    hits = search_knowledge("zanzibarquux")
    assert [h.path for h in hits] == [f"{playbook / 'fusion.md'}#zanzibar"]
    assert hits[0].title == "Kernel fusion: Zanzibar"


def test_an_index_path_with_uri_characters_works(tmp_path):
    path = tmp_path / "odd ?#% dir" / "index.sqlite3"
    assert search_knowledge("persistent kernels", kind="playbook", db_path=path)[0].path.startswith(
        "playbook/persistent_kernels.md"
    )


def test_a_damaged_index_file_is_rebuilt(tmp_path):
    path = tmp_path / "index.sqlite3"
    path.write_bytes(b"not a database at all")
    assert search_knowledge("online softmax", db_path=path)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] > 0
