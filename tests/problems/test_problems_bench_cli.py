"""`solforge bench` runs every built-in definition's reference, end to end on the CPU,
over its CPU-sized smoke workloads: the harness, the SOL counting and the trace output."""

from __future__ import annotations

import pytest

from solforge.cli import main
from solforge.problems import builtin_names, load_builtin, select_workloads
from solforge.spec import EvaluationStatus, Trace, read_jsonl


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_names())
def test_solforge_bench_runs_every_builtin_reference_on_its_smoke_workloads(name, tmp_path, capsys):
    out = tmp_path / "traces.jsonl"
    code = main(["bench", name, "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.out[-3000:] + printed.err[-3000:]
    _, workloads = load_builtin(name)
    smoke = {w.uuid for w in select_workloads(workloads, "smoke")}
    traces = read_jsonl(out, Trace)
    assert {t.workload.uuid for t in traces} == smoke and len(traces) == len(smoke)
    for t in traces:
        ev = t.evaluation
        assert t.solution == "eager"
        assert ev.status is EvaluationStatus.PASSED, f"{t.workload.label}: {ev.status.value}: {ev.log[-500:]}"
        assert ev.performance.latency_ms > 0 and ev.solforge.timing.count >= 3
        assert ev.solforge.correctness_trials >= 3
