"""The report as one static HTML file: plotly.js inlined (it works offline and can be
mailed), the charts, the tables, and a small script that shows a candidate's diff
against its parent when its node in the lineage tree is clicked (or when the page is
opened at `#candidate-N`).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from solforge.report import analysis, figures
from solforge.report.snapshot import RunSnapshot, read_snapshot
from solforge.search import CandidateState, NoteKind
from solforge.spec import SpecError

REPORT_FILE = "report.html"
CHART_IDS = ("fitness", "lineage", "roofline", "failures", "cost")  # the div of each chart
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1280px; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.92em; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fff4e5; border: 1px solid #f0a040; padding: 8px 16px; }
pre { background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: 0.85em; max-height: 480px; }
#candidate-diff .add { color: #116611; background: #e6ffe6; }
#candidate-diff .del { color: #991111; background: #ffe6e6; }
#candidate-diff .hunk { color: #555599; } .notes { color: #555; font-size: 0.9em; }
"""

# Shows one candidate (its facts, and its diff against its first parent, or its source for
# a seed) in #candidate-view: on a click in the lineage tree, and at #candidate-N.
_VIEWER_JS = """
(function () {
  var data = JSON.parse(document.getElementById('candidates-data').textContent);
  var view = document.getElementById('candidate-view');
  function show(id) {
    var c = data[String(id)];
    if (!c) { return; }
    document.getElementById('candidate-title').textContent = c.title;
    document.getElementById('candidate-meta').textContent = c.meta;
    var pre = document.getElementById('candidate-diff');
    pre.textContent = '';
    var text = c.diff || c.source;
    text.split('\\n').forEach(function (line) {
      var span = document.createElement('span');
      span.textContent = line + '\\n';
      if (c.diff && line.charAt(0) === '+' && line.slice(0, 3) !== '+++') { span.className = 'add'; }
      else if (c.diff && line.charAt(0) === '-' && line.slice(0, 3) !== '---') { span.className = 'del'; }
      else if (c.diff && line.slice(0, 2) === '@@') { span.className = 'hunk'; }
      pre.appendChild(span);
    });
    view.setAttribute('data-candidate', String(id));
  }
  var tree = document.getElementById('lineage');
  if (tree && tree.on) {
    tree.on('plotly_click', function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (p && p.customdata !== undefined) {
        show(p.customdata);
        history.replaceState(null, '', '#candidate-' + p.customdata);
      }
    });
  }
  function fromHash() {
    var m = /^#candidate-(\\d+)$/.exec(location.hash);
    if (m) { show(m[1]); }
  }
  window.addEventListener('hashchange', fromHash);
  if (view.getAttribute('data-default')) { show(view.getAttribute('data-default')); }
  fromHash();
})();
"""


def write_report(run_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the HTML report of the run in `run_dir` to `out_path` (default
    `<run_dir>/report.html`) and return its path.

    One self-contained file (plotly.js inlined, no network): fitness over time and over
    candidates with the best-so-far line; the lineage tree coloured by status, with each
    candidate's diff against its parent on click; the roofline (arithmetic intensity
    against achieved GFLOP/s; datasheet and calibrated roofs; eager and torch.compile
    marked); the winner's per-workload table (eager, compile, best, SOL, SOL fraction);
    evaluations by status with an example log per failure; cost by operator. A damaged
    archive is read as far as it is sound and the report names what it could not read.
    The file is written whole or not at all (a temporary file, then a rename).

    Raises SpecError (one line) when `run_dir` is not a run, its archive is of a newer
    schema or damaged past its run record, or the report cannot be written there.
    """
    snap = read_snapshot(run_dir)
    page = render(snap)
    out = Path(out_path) if out_path is not None else Path(run_dir) / REPORT_FILE
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SpecError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    return out


def render(snap: RunSnapshot) -> str:
    """The report page of `snap` as one HTML string."""
    import plotly.io as pio

    statuses = {c.id: analysis.candidate_status(snap, c) for c in snap.candidates}
    winner_id, winner_how = analysis.find_winner(snap)
    committed = {e.candidate_id for e in snap.lineage}
    roofline = analysis.roofline_data(snap)
    groups = analysis.failure_breakdown(snap)
    charts = {
        "fitness": figures.fitness_figure(snap, statuses),
        "lineage": figures.lineage_figure(snap, statuses, winner_id, committed),
        "roofline": figures.roofline_figure(roofline),
        "failures": figures.failures_figure(groups),
        "cost": figures.cost_figure(snap.totals),
    }
    div = {
        key: pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=key, config=PLOTLY_CONFIG)
        for i, (key, fig) in enumerate(charts.items())
    }
    title = snap.run.run_id if snap.run is not None else snap.run_dir.name
    body = [
        f"<h1>solforge run {_e(title)}</h1>",
        _unreadable_section(snap),
        _summary_section(snap, winner_id, winner_how),
        "<h2>Fitness</h2>", div["fitness"],
        "<h2>Lineage</h2>", div["lineage"], _candidate_view(winner_id),
        "<h2>Roofline</h2>", div["roofline"], _notes(roofline.notes),
        "<h2>Winner</h2>", _winner_section(snap, winner_id, winner_how),
        "<h2>Failures</h2>", div["failures"], _failure_logs(groups),
        "<h2>Cost</h2>", div["cost"], _cost_table(snap),
        f'<script type="application/json" id="candidates-data">{_script_json(_candidate_data(snap, statuses))}'
        "</script>",
        f"<script>{_VIEWER_JS}</script>",
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>solforge report: {_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n")


# -- sections -------------------------------------------------------------------------


def _unreadable_section(snap: RunSnapshot) -> str:
    if not snap.unreadable and snap.damaged is None:
        return ""
    head = "The archive is damaged" + (f" (SQLite: {_e(snap.damaged)})" if snap.damaged else "")
    items = "".join(f"<li>{_e(line)}</li>" for line in snap.unreadable)
    return (f'<section id="unreadable" class="warning"><b>{head}.</b> It was read as far as it is sound; '
            f"this report leaves out what could not be read:<ul>{items or '<li>(nothing else)</li>'}</ul></section>")


def _summary_section(snap: RunSnapshot, winner_id: int | None, how: str) -> str:
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in analysis.run_facts(snap, winner_id, how))
    return f'<table id="summary">{cells}</table>'


def _candidate_view(winner_id: int | None) -> str:
    default = f' data-default="{winner_id}"' if winner_id is not None else ""
    return (f'<div id="candidate-view"{default}><h3 id="candidate-title">Click a candidate in the tree</h3>'
            '<div id="candidate-meta" class="notes"></div><pre id="candidate-diff"></pre></div>')


def _winner_section(snap: RunSnapshot, winner_id: int | None, how: str) -> str:
    if winner_id is None:
        return f"<p>{_e(how)}.</p>"
    rows = analysis.winner_rows(snap, winner_id)
    head = ("workload", "set", "status", "eager ms", "torch.compile ms", "best ms", "SOL ms (datasheet)",
            "SOL ms (calibrated)", "SOL fraction", "x eager")
    cells = []
    for r in rows:
        values = [_e(r.label), "held-out" if r.held_out else "search", _e(r.status)]
        nums = [_num(r.eager_ms, ".4g"), _num(r.compile_ms, ".4g"), _num(r.best_ms, ".4g"), _num(r.sol_ms, ".4g"),
                _num(r.sol_calibrated_ms, ".4g"), _num(r.sol_fraction, ".3f"), _num(r.speedup_vs_eager, ".2f")]
        cells.append("<tr>" + "".join(f"<td>{v}</td>" for v in values)
                     + "".join(f'<td class="num">{v}</td>' for v in nums) + "</tr>")
    c = snap.candidate(winner_id)
    what = f"#{winner_id}: {c.operator}, {c.family}, {c.solution.name}" if c is not None else f"#{winner_id}"
    return (f"<p>{_e(what)} ({_e(how)}). SOL fraction = T_SOL / T_k with the calibrated bound where measured.</p>"
            f'<table id="winner-table"><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{"".join(cells)}</table>')


def _failure_logs(groups: list[analysis.FailureGroup]) -> str:
    failing = [g for g in groups if g.status != "PASSED"]
    if not failing:
        return "<p>No evaluation failed.</p>"
    parts = []
    for g in failing:
        parts.append(f'<details class="failure" data-status="{_e(g.status)}"><summary><b>{_e(g.status)}</b>: '
                     f"{g.search} search, {g.held_out} held-out; example: {_e(g.example)}</summary>"
                     f"<pre>{_e(g.log)}</pre></details>")
    return '<div id="failure-logs">' + "".join(parts) + "</div>"


def _cost_table(snap: RunSnapshot) -> str:
    if snap.totals is None:
        return "<p>The cost ledger could not be read.</p>"
    head = ("operator", "GPU-seconds", "wall seconds", "input tokens", "output tokens", "USD")
    rows = [*sorted(snap.totals.by_operator.items()), ("total", snap.totals.run)]
    cells = "".join(
        f"<tr><td>{_e(op)}</td>" + "".join(f'<td class="num">{v}</td>' for v in (
            f"{u.gpu_seconds:,.1f}", f"{u.wall_seconds:,.1f}", f"{u.llm_input_tokens:,}", f"{u.llm_output_tokens:,}",
            f"{u.cost_usd:,.4f}")) + "</tr>"
        for op, u in rows
    )
    return f'<table id="cost-table"><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{cells}</table>'


def _candidate_data(snap: RunSnapshot, statuses: dict[int, str]) -> dict[str, dict[str, str]]:
    """What the viewer shows per candidate: title, facts, diff (or a seed's source)."""
    rationale = {n.candidate_id: n.text for n in snap.notes if n.kind is NoteKind.rationale}
    out = {}
    for c in snap.candidates:
        parents = ", ".join(f"#{p}" for p in c.parent_ids) or "none (a seed)"
        params = ", ".join(f"{k}={v}" for k, v in sorted(c.parameters.items()))
        meta = (f"status {statuses.get(c.id)}; fitness {_num(c.fitness, '.4f')}; parents {parents}; "
                f"operator {c.operator}; family {c.family}" + (f"; {params}" if params else "")
                + (f"; rationale: {rationale[c.id]}" if c.id in rationale else ""))
        if c.state is CandidateState.dropped:
            meta += "; dropped: " + next((n.text for n in snap.notes if n.candidate_id == c.id
                                          and n.kind is NoteKind.failure), "no note")
        entry = c.solution.spec.entry_file
        source = "\n".join(f"# {s.path}\n{s.content}" for s in c.solution.sources if s.path == entry) or \
            "\n".join(s.content for s in c.solution.sources)
        diff_title = "diff against #" + str(c.parent_ids[0]) if c.parent_ids else "source (no parent to diff against)"
        if c.parent_ids and not c.diff:
            diff_title = f"no change in the sources against #{c.parent_ids[0]}"
        out[str(c.id)] = {"title": f"Candidate #{c.id}: {diff_title}", "meta": meta, "diff": c.diff,
                          "source": source}
    return out


# -- formatting -----------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _notes(lines: list[str]) -> str:
    return '<ul class="notes">' + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>"


def _script_json(value: object) -> str:
    # Inside <script>, only "</" can end the element early; JSON allows "<\/" for it.
    return json.dumps(value).replace("</", "<\\/")
