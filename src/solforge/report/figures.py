"""The report's charts as plotly figures: fitness over time and over candidates, the
lineage tree, the roofline, the failure breakdown and the cost by operator.

Each function takes the data `analysis` computed and returns a `plotly.graph_objects.Figure`;
`page` turns them into HTML. plotly is imported here only, when a report is made.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from solforge.report.analysis import STATUS_COLORS, FailureGroup, RooflineData
from solforge.report.snapshot import RunSnapshot

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from solforge.search import ResourceTotals

BEST_SO_FAR_COLOR = "#1f3a93"
ROOF_COLORS = {"datasheet": "#222222", "calibrated": "#e6550d"}
BASELINE_SYMBOLS = {"eager": "x", "compile": "diamond"}
WORKLOAD_COLORS = ("#1f77b4", "#17becf", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#ff7f0e")
HEIGHT_PX = 440


def _layout(fig: go.Figure, title: str, **kwargs: object) -> go.Figure:
    settings: dict[str, object] = dict(title=title, height=HEIGHT_PX, template="plotly_white",
                                       margin=dict(l=70, r=30, t=60, b=60), legend=dict(orientation="h", y=-0.18))
    fig.update_layout(**{**settings, **kwargs})
    return fig


def _empty(fig: go.Figure, title: str, why: str) -> go.Figure:
    fig.add_annotation(text=why, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=16))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def fitness_figure(snap: RunSnapshot, statuses: dict[int, str]) -> go.Figure:
    """Fitness (geometric-mean SOL score, 0 when a workload failed) of each evaluated
    candidate, against seconds since the run started and against evaluation order, with
    the best-so-far line on both."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("over time", "over candidates (evaluation order)"))
    history = snap.history
    if not history:
        return _empty(go.Figure(), "Fitness", "no candidate was evaluated")
    start = snap.run.created_at if snap.run is not None else history[0].created_at
    xs_time = [h.evaluated_at - start for h in history]
    xs_order = list(range(1, len(history) + 1))
    for col, xs in ((1, xs_time), (2, xs_order)):
        by_status: dict[str, list[int]] = {}
        for i, h in enumerate(history):
            by_status.setdefault(statuses.get(h.candidate_id, "UNKNOWN"), []).append(i)
        for status, idx in sorted(by_status.items()):
            fig.add_trace(go.Scatter(
                x=[xs[i] for i in idx], y=[history[i].fitness for i in idx], mode="markers",
                marker=dict(color=STATUS_COLORS.get(status, "#c7c7c7"), size=9, line=dict(width=0)),
                name=status, legendgroup=status, showlegend=col == 1, customdata=[history[i].candidate_id for i in idx],
                hovertemplate="candidate #%{customdata}<br>fitness %{y:.4f}<extra>" + status + "</extra>",
            ), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=xs, y=[h.best_so_far for h in history], mode="lines", line=dict(color=BEST_SO_FAR_COLOR, width=3,
                                                                                 shape="hv"),
            name="best so far", legendgroup="best", showlegend=col == 1, hoverinfo="skip",
        ), row=1, col=col)
    fig.update_xaxes(title_text="seconds since the run started", row=1, col=1)
    fig.update_xaxes(title_text="candidates evaluated", row=1, col=2)
    fig.update_yaxes(title_text="fitness (geometric-mean SOL score)", row=1, col=1)
    return _layout(fig, "Fitness")


def tree_layout(parents: dict[int, int | None]) -> dict[int, tuple[float, int]]:
    """(x, depth) of each node of a forest given each node's first parent (None for a root):
    leaves get consecutive x in id order, a parent sits over the middle of its children.
    Iterative, so a lineage thousands of versions deep lays out too."""
    children: dict[int | None, list[int]] = {}
    for node in sorted(parents):
        parent = parents[node] if parents[node] in parents else None
        children.setdefault(parent, []).append(node)
    pos: dict[int, tuple[float, int]] = {}
    next_leaf = 0
    stack: list[tuple[int, int, bool]] = [(root, 0, False) for root in reversed(children.get(None, []))]
    while stack:
        node, depth, expanded = stack.pop()
        kids = children.get(node, [])
        if not kids:
            pos[node] = (float(next_leaf), depth)
            next_leaf += 1
        elif expanded:
            xs = [pos[k][0] for k in kids]
            pos[node] = ((min(xs) + max(xs)) / 2, depth)
        else:
            stack.append((node, depth, True))
            stack.extend((k, depth + 1, False) for k in reversed(kids))
    return pos


def lineage_figure(snap: RunSnapshot, statuses: dict[int, str], winner_id: int | None,
                   committed: set[int]) -> go.Figure:
    """The lineage tree: one node per candidate coloured by status, an edge to its first
    parent (solid; the diff is against it) and to a crossover's second parent (dotted).
    Committed lineage versions have a thick outline; the winner is a star."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if not snap.candidates:
        return _empty(fig, "Lineage", "no candidate in the archive")
    pos = tree_layout({c.id: (c.parent_ids[0] if c.parent_ids else None) for c in snap.candidates})
    for position, dash, name in ((0, "solid", "first parent"), (1, "dot", "second parent (crossover)")):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for c in snap.candidates:
            if len(c.parent_ids) > position and c.parent_ids[position] in pos:
                (x0, d0), (x1, d1) = pos[c.parent_ids[position]], pos[c.id]
                xs += [x0, x1, None]
                ys += [-d0, -d1, None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#b0b0b0", width=1.5, dash=dash),
                                     name=name, hoverinfo="skip"))
    by_status: dict[str, list] = {}
    for c in snap.candidates:
        by_status.setdefault(statuses.get(c.id, "UNKNOWN"), []).append(c)
    for status, cands in sorted(by_status.items()):
        fig.add_trace(go.Scatter(
            x=[pos[c.id][0] for c in cands], y=[-pos[c.id][1] for c in cands], mode="markers", name=status,
            marker=dict(color=STATUS_COLORS.get(status, "#c7c7c7"),
                        size=[20 if c.id == winner_id else 13 for c in cands],
                        symbol=["star" if c.id == winner_id else "circle" for c in cands],
                        line=dict(color="#000000", width=[3 if c.id in committed else 0.5 for c in cands])),
            customdata=[c.id for c in cands],
            text=[f"#{c.id} {c.operator} {c.family}<br>fitness {_fmt(c.fitness, '.4f')}" for c in cands],
            hovertemplate="%{text}<extra>" + status + "</extra>",
        ))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(title_text="generation (parent above child)", tickvals=sorted({-d for _, d in pos.values()}),
                     ticktext=[str(d) for d in sorted({d for _, d in pos.values()}, reverse=True)])
    return _layout(fig, "Lineage (click a candidate for its diff against its parent)", clickmode="event")


def roofline_figure(data: RooflineData) -> go.Figure:
    """Arithmetic intensity (FLOP per compulsory byte) against achieved GFLOP/s, log-log:
    one point per candidate and workload, eager and torch.compile marked, and the
    datasheet and calibrated roofs min(bandwidth x intensity, compute ceiling)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if not data.points and not data.roofs:
        return _empty(fig, "Roofline", "no measured latency with known FLOPs and bytes")
    labels = sorted({p.workload for p in data.points})
    colors = {label: WORKLOAD_COLORS[i % len(WORKLOAD_COLORS)] for i, label in enumerate(labels)}
    for label in labels:
        pts = [p for p in data.points if p.workload == label and p.kind == "candidate"]
        if pts:
            fig.add_trace(go.Scatter(
                x=[p.arithmetic_intensity for p in pts], y=[p.gflop_s for p in pts], mode="markers",
                name=label + (" (held-out)" if pts[0].held_out else ""),
                marker=dict(color=colors[label], size=8, opacity=0.75), customdata=[p.candidate_id for p in pts],
                text=[f"{p.latency_ms:.4g} ms, {p.gb_s:.4g} GB/s" for p in pts],
                hovertemplate="candidate #%{customdata}, " + label
                + "<br>%{x:.3g} FLOP/B, %{y:.4g} GFLOP/s<br>%{text}<extra></extra>",
            ))
    for kind, symbol in BASELINE_SYMBOLS.items():
        pts = [p for p in data.points if p.kind == kind]
        if pts:
            fig.add_trace(go.Scatter(
                x=[p.arithmetic_intensity for p in pts], y=[p.gflop_s for p in pts], mode="markers",
                name="torch.compile" if kind == "compile" else kind,
                marker=dict(symbol=symbol, size=12, color=[colors.get(p.workload, "#444444") for p in pts],
                            line=dict(color="#000000", width=1.5)),
                text=[f"{kind}, {p.workload}: {p.latency_ms:.4g} ms, {p.gb_s:.4g} GB/s" for p in pts],
                hovertemplate="%{text}<br>%{x:.3g} FLOP/B, %{y:.4g} GFLOP/s<extra></extra>",
            ))
    xs = [p.arithmetic_intensity for p in data.points] or [1.0]
    lo, hi = math.log10(min(xs)) - 1.5, math.log10(max(xs)) + 1.5
    grid = [10 ** (lo + (hi - lo) * i / 200) for i in range(201)]
    for roof in data.roofs:
        ys = [min(roof.bandwidth_gb_s * x, roof.compute_gflop_s or math.inf) for x in grid]
        ceiling = f", {roof.compute_gflop_s:,.4g} GFLOP/s {roof.compute_label}" if roof.compute_gflop_s else ""
        fig.add_trace(go.Scatter(
            x=grid, y=ys, mode="lines", name=f"{roof.source} roof: {roof.bandwidth_gb_s:,.4g} GB/s{ceiling}",
            line=dict(color=ROOF_COLORS.get(roof.source, "#555555"), width=2.5,
                      dash="solid" if roof.source == "datasheet" else "dash"),
            hoverinfo="skip",
        ))
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP / compulsory byte)")
    fig.update_yaxes(type="log", title_text="achieved GFLOP/s")
    return _layout(fig, "Roofline", height=HEIGHT_PX + 80)


def failures_figure(groups: list[FailureGroup]) -> go.Figure:
    """Per-workload evaluations by status (first rounds), search and held-out stacked;
    DROPPED counts candidates the harness could not judge."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if not groups:
        return _empty(fig, "Evaluations by status", "no evaluation in the archive")
    names = [g.status for g in groups]
    for kind, label, opacity in (("search", "search workloads", 1.0), ("held_out", "held-out workloads", 0.55)):
        fig.add_trace(go.Bar(
            x=names, y=[getattr(g, kind) for g in groups], name=label, opacity=opacity,
            marker=dict(color=[STATUS_COLORS.get(n, "#c7c7c7") for n in names], line=dict(color="#333333", width=1)),
            hovertemplate="%{x}: %{y} " + label + "<extra></extra>",
        ))
    fig.update_yaxes(title_text="evaluations (workload x candidate)")
    return _layout(fig, "Evaluations by status", barmode="stack")


def cost_figure(totals: ResourceTotals | None) -> go.Figure:
    """What each operator spent: device seconds (GPU-seconds held by evaluation, and wall
    seconds of its steps), LLM tokens in and out, and US dollars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if totals is None or not totals.by_operator:
        return _empty(go.Figure(), "Cost by operator", "no cost recorded")
    ops = sorted(totals.by_operator)
    use = [totals.by_operator[o] for o in ops]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("seconds", "LLM tokens", "US dollars"),
                        horizontal_spacing=0.09)
    series = (
        (1, "GPU-seconds", [u.gpu_seconds for u in use], "#2ca02c"),
        (1, "wall seconds", [u.wall_seconds for u in use], "#98df8a"),
        (2, "input tokens", [u.llm_input_tokens for u in use], "#1f77b4"),
        (2, "output tokens", [u.llm_output_tokens for u in use], "#aec7e8"),
        (3, "USD", [u.cost_usd for u in use], "#d62728"),
    )
    for col, name, ys, color in series:
        fig.add_trace(go.Bar(x=ops, y=ys, name=name, marker=dict(color=color),
                             hovertemplate="%{x}: %{y:,.4g} " + name + "<extra></extra>"), row=1, col=col)
    return _layout(fig, "Cost by operator", barmode="group")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
