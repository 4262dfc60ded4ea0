"""SOL reports and speedups attached to traces from baseline latencies (bench.sol), in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from solforge.bench.sol import attach_sol, baseline_latencies, detect_device, measured_latency_ms
from solforge.spec import (
    Environment,
    Evaluation,
    EvaluationStatus,
    Performance,
    TimingStats,
    Trace,
    Workload,
    load_definition,
)

DEFN = load_definition(Path(__file__).parent / "kernels" / "rmsnorm_small.json")


def trace(uuid: str, status=EvaluationStatus.PASSED, latency_ms: float = 2.0, measured: bool = True) -> Trace:
    timing = TimingStats(method="perf_counter+cache-flush", median_ms=latency_ms, iqr_ms=0.0, min_ms=latency_ms,
                         count=1, samples_ms=[latency_ms], is_performance_measurement=measured)
    ev = Evaluation(status=status, environment=Environment(hardware="test"), timestamp="now",
                    performance=Performance(latency_ms=latency_ms) if status is EvaluationStatus.PASSED else None)
    ev.solforge.timing = timing
    return Trace(definition=DEFN.name, workload=Workload(uuid=uuid, axes={"T": 8}), solution="s", evaluation=ev)


def test_baseline_latencies_keep_only_real_measurements():
    latencies = baseline_latencies({
        "eager": [trace("a", latency_ms=4.0), trace("b", EvaluationStatus.RUNTIME_ERROR)],
        "compile": [trace("a", latency_ms=3.0, measured=False), trace("b", latency_ms=1.0)],
    })
    assert latencies == {"eager": {"a": 4.0}, "compile": {"b": 1.0}}


def test_attach_sol_fills_speedups_and_the_report():
    traces = [trace("a", latency_ms=2.0), trace("b", latency_ms=5.0), trace("c", EvaluationStatus.INCORRECT_NUMERICAL),
              trace("d", measured=False)]
    attach_sol(DEFN, traces, {"eager": {"a": 4.0}, "compile": {"a": 3.0, "b": 10.0}}, detect_device("cpu"))
    a, b, c, d = (t.evaluation for t in traces)
    assert a.performance.reference_latency_ms == 4.0 and a.performance.speedup_factor == pytest.approx(2.0)
    assert a.solforge.speedup_vs_compile == pytest.approx(1.5)
    assert a.solforge.baseline_latency_ms == {"eager": 4.0, "compile": 3.0}
    assert a.solforge.sol.bytes_moved >= 2 * 4 * 8 * 64  # x read and y written, float32
    assert a.solforge.sol.achieved_gb_s == pytest.approx(a.solforge.sol.bytes_moved / 2e-3 / 1e9)
    assert b.performance.speedup_factor == 0.0 and b.solforge.speedup_vs_compile == pytest.approx(2.0)
    assert b.solforge.sol is not None and b.solforge.sol.sol_score is None  # no eager T_b for b
    assert c.solforge.sol is None and c.solforge.baseline_latency_ms == {}
    assert d.solforge.sol is None and "not a performance measurement" in d.solforge.warnings[0]
    assert measured_latency_ms(traces[3]) is None


def test_detect_device_is_cached_per_device():
    assert detect_device("cpu") is detect_device("cpu")
