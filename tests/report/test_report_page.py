"""The report page of a run: every chart and table, what each shows, and the pieces that
compute it (statuses, winner, tree layout, roofs)."""

from __future__ import annotations

import html
import json
import re

import pytest
from report_support import HARDWARE, NUMERICAL_LOG

from solforge.hardware import spec_by_key
from solforge.report import CHART_IDS, read_snapshot, write_report
from solforge.report.analysis import (
    DROPPED,
    IN_FLIGHT,
    Roof,
    _roof,
    candidate_status,
    failure_breakdown,
    find_winner,
    roofline_data,
    winner_rows,
)
from solforge.report.figures import tree_layout
from solforge.report.page import _script_json
from solforge.roofline import Work


@pytest.fixture(scope="module")
def page(synthetic_master, tmp_path_factory) -> str:
    out = write_report(synthetic_master, tmp_path_factory.mktemp("report") / "report.html")
    return out.read_text()


def _candidate_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="candidates-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_every_chart_is_a_plotly_div_and_plotly_js_is_inlined(page):
    for chart in CHART_IDS:
        assert f'id="{chart}"' in page
        assert re.search(r'Plotly\.newPlot\(\s*"' + chart + '"', page), chart
    assert "plotly.js v" in page  # the library itself, not a link to it
    assert not re.search(r"<script[^>]+src=", page)  # nothing to fetch: the page works offline
    assert not re.search(r"<link[^>]+href=\"https?:", page)
    assert '"name":"eager"' in page and '"name":"torch.compile"' in page  # both baselines on the roofline


def test_the_winner_table_has_every_workload_with_eager_best_and_sol(page, synthetic_master):
    snap = read_snapshot(synthetic_master)
    winner, how = find_winner(snap)
    assert winner == 2 and "held-out" in how  # no winner/ exported: the fittest that passed held-out
    rows = winner_rows(snap, winner)
    assert [r.held_out for r in rows] == [False, False, False, True]
    first = rows[0]
    assert first.eager_ms == pytest.approx(0.40) and first.best_ms == pytest.approx(0.40 * 0.55)  # the re-timing
    assert first.compile_ms == pytest.approx(0.32)
    assert first.sol_calibrated_ms is not None and first.sol_ms is None  # calibrated peaks only, as recorded
    assert first.sol_fraction == pytest.approx(first.sol_calibrated_ms / first.best_ms)
    table = re.search(r'<table id="winner-table">(.*?)</table>', page, re.S).group(1)
    assert table.count("<tr>") == 1 + len(rows)
    assert "smoke t=1" in table and "held-out" in table and "0.22" in table


def test_exported_winner_is_the_one_shown(run_copy):
    (run_copy / "winner").mkdir()
    snap = read_snapshot(run_copy)
    name = snap.candidate(1).solution.name
    (run_copy / "winner" / "solution.json").write_text(json.dumps({"name": name}))
    assert find_winner(read_snapshot(run_copy))[0] == 1


def test_statuses_and_failures_with_example_logs(page, synthetic_master):
    snap = read_snapshot(synthetic_master)
    statuses = {c.id: candidate_status(snap, c) for c in snap.candidates}
    assert statuses == {1: "PASSED", 2: "PASSED", 3: "INCORRECT_NUMERICAL", 4: DROPPED, 5: IN_FLIGHT}
    groups = {g.status: g for g in failure_breakdown(snap)}
    assert (groups["PASSED"].search, groups["PASSED"].held_out) == (3 + 3 + 2, 1)  # first rounds only
    assert groups["INCORRECT_NUMERICAL"].search == 1 and groups["INCORRECT_NUMERICAL"].log == NUMERICAL_LOG
    assert "BrokenPipeError" in groups[DROPPED].log
    assert html.escape(NUMERICAL_LOG) in page and "BrokenPipeError" in page


def test_cost_by_operator_with_tokens_and_usd(page):
    table = re.search(r'<table id="cost-table">(.*?)</table>', page, re.S).group(1)
    agent = re.search(r"<tr><td>agent</td>(.*?)</tr>", table).group(1)
    assert "12,000" in agent and "3,400" in agent and "0.0875" in agent
    total = re.search(r"<tr><td>total</td>(.*?)</tr>", table).group(1)
    assert "45.0" in total  # wall seconds: 5 proposals of 1 s, 5 rounds of 2 s, the agent's 30 s


def test_each_candidate_has_its_diff_against_its_first_parent(page):
    data = _candidate_data(page)
    assert set(data) == {"1", "2", "3", "4", "5"}
    assert data["1"]["diff"] == "" and "def run" in data["1"]["source"]  # a seed: its source instead
    assert "diff against #2" in data["3"]["title"]  # a crossover diffs against its first parent
    assert re.search(r"^\+.*ACCUMULATORS.*4", data["3"]["diff"], re.M)
    assert "dropped: harness error" in data["4"]["meta"]


def test_script_json_cannot_close_the_script_element():
    value = {"source": "x = '</script><script>alert(1)</script>'"}
    text = _script_json(value)
    assert "</" not in text and json.loads(text) == value


def test_roofs_of_another_machine_are_not_drawn(synthetic_master):
    data = roofline_data(read_snapshot(synthetic_master))
    assert data.roofs == []
    assert any(HARDWARE in note and "not drawn" in note for note in data.notes)
    kinds = {p.kind for p in data.points}
    assert kinds == {"candidate", "eager", "compile"}
    # rmsnorm: about one FLOP per byte moved in bf16 (x*x, sum, scale, weight), far left of any ridge
    assert all(0.1 < p.arithmetic_intensity < 10 for p in data.points)
    for p in data.points:
        assert p.gflop_s / p.gb_s == pytest.approx(p.arithmetic_intensity)


def test_a_roof_is_the_bandwidth_slope_and_the_compute_ceiling_of_the_definitions_mix():
    h100 = spec_by_key("h100-sxm").peaks()
    simt = _roof(h100, [Work({}, other_flops=10**9, bytes_moved=10**9)])
    assert simt == Roof("datasheet", h100.dram_bandwidth_gb_s, pytest.approx(h100.simt_tflops * 1e3), "SIMT")
    tensor = _roof(h100, [Work({"bfloat16": 10**12}, 0, 10**9), Work({"bfloat16": 10**12}, 0, 10**9)])
    assert tensor.compute_gflop_s == pytest.approx(h100.tensor_peak_tflops("bfloat16") * 1e3)
    assert tensor.compute_label == "bfloat16 tensor"


def test_tree_layout_puts_parents_over_their_children_and_survives_deep_lineages():
    pos = tree_layout({1: None, 2: 1, 3: 1, 4: 2, 5: None})
    assert pos[4][1] == 2 and pos[2][1] == 1 and pos[1][1] == 0
    assert pos[1][0] == (pos[2][0] + pos[3][0]) / 2
    assert pos[2][0] < pos[3][0] < pos[5][0]  # leaves left to right in id order, each tree after the last
    deep = tree_layout({i: (i - 1 if i > 1 else None) for i in range(1, 5001)})
    assert deep[5000] == (0.0, 4999)


def test_the_report_replaces_its_file_whole(synthetic_master, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("old")
    assert write_report(synthetic_master, out) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left
