"""The run report: one self-contained HTML file per search run, and the run listing.

    from solforge.report import write_report
    path = write_report("solforge-runs/rmsnorm_h4096-20260101-120000-ab12")  # -> .../report.html

- `snapshot`: reads a run's archive (read-only, as far as it is sound) into a `RunSnapshot`.
- `analysis`: what the report shows, as data (statuses, winner, roofline points, failures).
- `figures`: the plotly charts. `page`: the HTML page and `write_report`.
- `runs`: listing, summarizing and exporting the runs under a runs root.

plotly is imported only when a report is rendered, so `import solforge.report` stays light.
"""

from __future__ import annotations

from solforge.report.page import CHART_IDS, REPORT_FILE, render, write_report
from solforge.report.snapshot import RunSnapshot, read_snapshot, resolve_run_dir

__all__ = ["CHART_IDS", "REPORT_FILE", "RunSnapshot", "read_snapshot", "render", "resolve_run_dir", "write_report"]
