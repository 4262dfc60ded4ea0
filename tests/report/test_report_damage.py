"""A damaged archive is read as far as it is sound and the report says what it could not
read; what is not a run, or is of a newer schema, is refused in one line (exit 2)."""

from __future__ import annotations

import os
import random
import sqlite3

import pytest
from report_support import checkpoint

from solforge.cli import main
from solforge.report import read_snapshot, write_report
from solforge.search.archive_schema import SCHEMA_VERSION
from solforge.spec import SpecError


def _pages(path, table: str, pagetype: str | None = None) -> list[int]:
    """Page numbers of `table` (its b-tree and overflow pages), from SQLite's dbstat."""
    conn = sqlite3.connect(path)
    try:
        sql = "SELECT pageno FROM dbstat WHERE name = ?" + (" AND pagetype = ?" if pagetype else "")
        return sorted(r[0] for r in conn.execute(sql, (table, pagetype) if pagetype else (table,)))
    finally:
        conn.close()


def _page_size(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def test_an_archive_cut_short_keeps_the_candidates_before_the_cut(run_copy, tmp_path):
    path = checkpoint(run_copy)
    last_leaf = _pages(path, "candidates", "leaf")[-1]
    page_size = _page_size(path)
    os.truncate(path, (last_leaf - 1) * page_size)  # the file ends just before the last leaf of candidates

    snap = read_snapshot(run_copy)
    assert snap.damaged is not None and "malformed" in snap.damaged  # SQLite refused the file as a whole
    assert snap.run is not None and snap.run.run_id == run_copy.name
    assert 1 <= len(snap.candidates) < 5  # the ones before the cut
    assert [c.id for c in snap.candidates] == list(range(1, len(snap.candidates) + 1))
    assert any(line.startswith("candidates from #") for line in snap.unreadable)

    page = write_report(run_copy, tmp_path / "r.html").read_text()
    assert 'id="unreadable"' in page and "The archive is damaged" in page
    assert "candidates from #" in page


def test_garbage_in_the_evaluations_pages_loses_only_the_rounds(run_copy, tmp_path):
    path = checkpoint(run_copy)
    page_size = _page_size(path)
    rng = random.Random(0)
    with open(path, "r+b") as f:
        for page in _pages(path, "evaluations"):
            f.seek((page - 1) * page_size)
            f.write(bytes(rng.getrandbits(8) for _ in range(page_size)))

    snap = read_snapshot(run_copy)
    assert snap.damaged is None  # the file opens; only some of its pages are garbage
    assert [c.id for c in snap.candidates] == [1, 2, 3, 4, 5]
    assert [h.candidate_id for h in snap.history] == [1, 2, 3]  # fitness lives with the candidates
    lost = [line for line in snap.unreadable if "rounds" in line]
    assert any(line.startswith("candidate 1: its search rounds: DatabaseError") for line in lost)
    assert snap.totals is not None and snap.lineage  # other tables are intact

    page = write_report(run_copy, tmp_path / "r.html").read_text()
    assert "candidate 1: its search rounds" in page
    assert 'id="fitness"' in page and 'id="lineage"' in page


def test_an_archive_damaged_past_its_run_record_is_refused(run_copy, capsys):
    path = checkpoint(run_copy)
    page_size = _page_size(path)
    with open(path, "r+b") as f:
        for page in _pages(path, "runs"):
            f.seek((page - 1) * page_size)
            f.write(b"\xff" * page_size)
    with pytest.raises(SpecError, match="damaged past its run record"):
        read_snapshot(run_copy)
    assert main(["report", str(run_copy)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_newer_schema_is_refused_in_one_line(run_copy, capsys):
    conn = sqlite3.connect(run_copy / "archive.sqlite")
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    assert main(["report", str(run_copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"schema_version: {SCHEMA_VERSION + 1} is newer" in err[0]
    assert "Traceback" not in err[0]
    assert not (run_copy / "report.html").exists()


def test_a_directory_that_is_not_a_run_is_refused_in_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]

    (tmp_path / "archive.sqlite").write_text("these are notes, not a database\n" * 200)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable solforge archive" in err[0]

    other = sqlite3.connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE t (x)")
    other.close()
    os.replace(tmp_path / "other.sqlite", tmp_path / "archive.sqlite")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a" in capsys.readouterr().err
