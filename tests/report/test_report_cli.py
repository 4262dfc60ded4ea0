"""`solforge report` and `solforge runs list|show|export` over a run directory of a runs root."""

from __future__ import annotations

from solforge.cli import main
from solforge.report import read_snapshot
from solforge.report.analysis import all_traces
from solforge.spec import load_dataset


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_report_by_run_id_writes_into_the_run_and_prints_the_path(run_copy, capsys):
    runs_root = run_copy.parent
    assert main(["report", run_copy.name, "--runs-root", str(runs_root)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(runs_root / run_copy.name / "report.html")
    assert (run_copy / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_report_to_out_and_an_unknown_run(run_copy, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(run_copy), "--out", str(out)]) == 0
    assert out.is_file() and not (run_copy / "report.html").exists()
    capsys.readouterr()
    assert main(["report", "no-such-run", "--runs-root", str(run_copy.parent)]) == 2
    assert "no-such-run: no such run" in _one_line_error(capsys)


def test_runs_list_and_show(run_copy, capsys):
    runs_root = run_copy.parent
    (runs_root / "not-a-run").mkdir()  # a directory without an archive is not listed
    assert main(["runs", "list", "--runs-root", str(runs_root)]) == 0
    out = capsys.readouterr().out
    assert run_copy.name in out and "rmsnorm_h4096" in out and "0.6" in out and "not-a-run" not in out

    assert main(["runs", "show", run_copy.name, "--runs-root", str(runs_root)]) == 0
    out = capsys.readouterr().out
    assert "winner" in out and "#2" in out and "lineage" in out and "faster than version 1" in out
    assert "12,000" not in out and "15,400 LLM tokens" in out and "none yet" in out

    assert main(["runs", "list", "--runs-root", str(runs_root / "missing")]) == 2
    assert "no such runs directory" in _one_line_error(capsys)


def test_runs_export_is_a_dataset_flashinfer_tools_load(run_copy, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["runs", "export", str(run_copy), "--out", str(out)]) == 0
    ds = load_dataset(out)  # validates every file against the definition
    snap = read_snapshot(run_copy)
    assert list(ds.definitions) == ["rmsnorm_h4096"]
    assert {s.name for s in ds.solutions["rmsnorm_h4096"]} == {c.solution.name for c in snap.candidates}
    assert len(ds.traces) == len(all_traces(snap)) == 3 + 3 + 3 + 1 + 3  # every round, re-timing included
    assert {w.uuid for w in ds.workloads["rmsnorm_h4096"]} == {t.workload.uuid for t in ds.traces}
    capsys.readouterr()
    assert main(["runs", "export", str(run_copy), "--out", str(out)]) == 2  # never over an earlier export
    assert "exists and is not an empty directory" in _one_line_error(capsys)
