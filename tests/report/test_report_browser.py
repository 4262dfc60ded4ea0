"""The report of a real run, opened in a real browser (Debian's chromium, headless): every
chart is drawn with data, a candidate's diff shows, and a screenshot shows the plots.

The run is a real `solforge evolve` on the CPU (3 candidates over the smoke workloads),
to which one deliberately broken kernel is added through the archive's API and judged by
the real harness, so the failure breakdown has a real failure and a real log to show.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from solforge.bench import BenchConfig, evaluate
from solforge.hardware import Device
from solforge.roofline import attach_sol

detect_device = Device.parse
from solforge.problems import load_builtin
from solforge.report import CHART_IDS, write_report
from solforge.report.analysis import STATUS_COLORS
from solforge.report.figures import BEST_SO_FAR_COLOR, ROOF_COLORS
from solforge.search import Archive, ResourceUsage
from solforge.search.config import EvolveConfig
from solforge.search.evolve import evolve
from solforge.spec import EvaluationStatus, SourceFile

BROKEN_MESSAGE = "deliberately broken by the report test"
WALL_SECONDS_COLOR = "#98df8a"  # the cost chart's wall-seconds bars
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=20000"]
WINDOW = (1400, 5200)  # tall enough for the whole page in one screenshot


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed and `make test` could not install it here "
                    "(it runs `apt-get install -y chromium` as root where apt-get exists)")
    return found


def _run_chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh profile per run
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Path, int]:
    """(run directory, id of the broken candidate)."""
    tmp = tmp_path_factory.mktemp("real-run")
    old_cache = os.environ.get("SOLFORGE_CACHE_DIR")
    os.environ["SOLFORGE_CACHE_DIR"] = str(tmp / "cache")  # calibrated afresh: the roofline's calibrated roof
    try:
        definition, workloads = load_builtin("rmsnorm_h4096")
        smoke = [w for w in workloads if w.smoke]
        bench = BenchConfig(device="cpu", flush_bytes=8 << 20)
        result = evolve(definition, smoke, EvolveConfig(device="cpu", max_candidates=3, runs_root=tmp / "runs",
                                                        bench=bench))
        assert result.evaluated == 3
        with Archive.open(result.run_dir) as archive:
            parent = archive.candidate(result.best_id)
            broken = parent.solution.model_copy(deep=True)
            broken.name = parent.solution.name + "__broken"
            entry = broken.spec.entry_file
            broken.sources = [SourceFile(path=s.path, content=s.content + (
                f"\n\ndef run(**tensors):\n    raise RuntimeError({BROKEN_MESSAGE!r})\n" if s.path == entry else ""))
                for s in broken.sources]
            added = archive.add_candidate(broken, operator="hand-written", family=parent.family,
                                          parent_ids=[parent.id], rationale="a kernel that raises")
            archive.start_evaluation(added.candidate.id)
            traces = evaluate(definition, smoke, broken, "cpu", bench)
            attach_sol(definition, traces, archive.run.config["baselines"], detect_device("cpu"))
            archive.record_evaluation(added.candidate.id, traces, usage=ResourceUsage(wall_seconds=1.0))
            assert {t.evaluation.status for t in traces} != {EvaluationStatus.PASSED}
        yield result.run_dir, added.candidate.id
    finally:
        if old_cache is None:
            os.environ.pop("SOLFORGE_CACHE_DIR", None)
        else:
            os.environ["SOLFORGE_CACHE_DIR"] = old_cache


class _ChartCensus(HTMLParser):
    """Per chart div: plotly's drawn markers (`point` paths) and bars (paths with a height in
    `point` groups),
    its drawn lines (`js-line` paths), its legend entries, and the diff view's lines."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []  # the chart each open element belongs to
        self.points = dict.fromkeys(CHART_IDS, 0)
        self.lines = dict.fromkeys(CHART_IDS, 0)
        self.legend: dict[str, list[str]] = {c: [] for c in CHART_IDS}
        self._legend_text: str | None = None
        self.in_diff = False
        self.diff_added: list[str] = []
        self._span_add = False
        self._in_bar = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        chart = a.get("id") if a.get("id") in CHART_IDS else (self.stack[-1] if self.stack else None)
        classes = (a.get("class") or "").split()
        d = a.get("d") or ""
        if chart and tag == "path" and "point" in classes and len(d) > 8:
            self.points[chart] += 1  # a scatter marker
        if chart and tag == "path" and self._in_bar and _bar_height(d) > 0:
            self.points[chart] += 1  # a bar with a height
        self._in_bar = tag == "g" and "point" in classes
        if chart and tag == "path" and "js-line" in classes and len(d) > 8:
            self.lines[chart] += 1
        if chart and tag == "text" and "legendtext" in classes:
            self._legend_text = chart
        if a.get("id") == "candidate-diff":
            self.in_diff = True
        self._span_add = self.in_diff and tag == "span" and "add" in classes
        if tag not in ("path", "rect", "line", "circle", "br", "img", "meta", "input"):
            self.stack.append(chart)

    def handle_endtag(self, tag):
        if tag not in ("path", "rect", "line", "circle", "br", "img", "meta", "input") and self.stack:
            self.stack.pop()
        if tag == "pre":
            self.in_diff = False
        self._legend_text = None
        self._span_add = False

    def handle_data(self, data):
        if self._legend_text:
            self.legend[self._legend_text].append(data)
        if self._span_add:
            self.diff_added.append(data)


def _bar_height(d: str) -> float:
    """Height in pixels of a plotly bar path `Mx,y0Vy1H...`; 0 for anything else."""
    m = re.match(r"M[-\d.]+,([-\d.]+)V([-\d.]+)H", d)
    return abs(float(m.group(1)) - float(m.group(2))) if m else 0.0


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


@pytest.mark.slow
def test_report_of_a_real_run_renders_in_chromium(real_run, tmp_path):
    run_dir, broken_id = real_run
    report = write_report(run_dir)
    url = report.resolve().as_uri() + f"#candidate-{broken_id}"

    dom = _run_chromium(tmp_path, "--dump-dom", url).stdout
    census = _ChartCensus()
    census.feed(dom)
    for chart in CHART_IDS:
        assert census.points[chart] > 0, f"chart '{chart}' drew no marker or bar: {census.points}"
    assert census.lines["fitness"] >= 2  # the best-so-far line, over time and over candidates
    assert census.lines["lineage"] >= 1  # the parent -> child edges
    assert census.points["lineage"] == 4  # one node per candidate
    assert any("calibrated roof" in t for t in census.legend["roofline"]), census.legend["roofline"]
    assert {"eager", "best so far"} <= {t.strip() for ts in census.legend.values() for t in ts}
    assert any(BROKEN_MESSAGE in line for line in census.diff_added)  # the clicked candidate's diff
    assert f'data-candidate="{broken_id}"' in dom
    failing = next(s.value for s in EvaluationStatus if f'data-status="{s.value}"' in dom)
    assert BROKEN_MESSAGE in dom.split(f'data-status="{failing}"')[1].split("</details>")[0]  # its example log

    shot = tmp_path / "report.png"
    _run_chromium(tmp_path, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", url)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    pixels = np.asarray(image, dtype=np.int16)  # (height, width, 3)
    non_white = float((pixels.min(axis=2) < 235).mean())
    assert non_white > 0.03, f"the page is nearly blank ({non_white:.1%} non-white)"
    wanted = {"PASSED markers": STATUS_COLORS["PASSED"], f"{failing} marker and bar": STATUS_COLORS[failing],
              "best-so-far line": BEST_SO_FAR_COLOR, "calibrated roof": ROOF_COLORS["calibrated"],
              "cost bars": WALL_SECONDS_COLOR}
    for what, color in wanted.items():
        count = int((np.abs(pixels - np.array(_hex(color), dtype=np.int16)).max(axis=2) <= 6).sum())
        assert count >= 30, f"the screenshot shows no {what} ({color}: {count} pixels)"
