"""SOL reports and speedups attached to traces at a Device's peaks, and SOL bounds per workload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from solforge.hardware import Ceilings, Device
from solforge.hardware.datasheet import H100_SXM
from solforge.hardware.registry import device_kind
from solforge.roofline import (
    attach_sol,
    baseline_latencies,
    count_work,
    measured_latency_ms,
    sol_bound,
    sol_summary,
)
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

DEFN = load_definition(Path(__file__).parents[1] / "bench" / "kernels" / "rmsnorm_small.json")


def trace(uuid: str, status=EvaluationStatus.PASSED, latency_ms: float = 2.0, measured: bool = True) -> Trace:
    timing = TimingStats(method="perf_counter+cache-flush", median_ms=latency_ms, iqr_ms=0.0, min_ms=latency_ms,
                         count=1, samples_ms=[latency_ms], is_performance_measurement=measured)
    ev = Evaluation(status=status, environment=Environment(hardware="test"), timestamp="now",
                    performance=Performance(latency_ms=latency_ms) if status is EvaluationStatus.PASSED else None)
    ev.solforge.timing = timing
    return Trace(definition=DEFN.name, workload=Workload(uuid=uuid, axes={"T": 8}), solution="s", evaluation=ev)


def device(spec=None, bandwidth_gb_s: float | None = None) -> Device:
    """A Device with the given datasheet row and calibrated bandwidth, built without detecting anything."""
    identity = Device.parse("cpu").identity
    ceilings = None if bandwidth_gb_s is None else Ceilings(
        device="cpu", device_name=identity.name, sm_count=identity.sm_count, dram_bandwidth_gb_s=bandwidth_gb_s,
        matmul_tflops={"float32": 1.0}, simt_tflops=1.0, measured_at="then", torch_version=torch.__version__)
    return Device(kind=device_kind("cpu"), index=0, identity=identity, spec=spec, match_reason="built by the test",
                  ceilings=ceilings, ceilings_path=Path("/nonexistent"), count=1)


def test_baseline_latencies_keep_only_real_measurements():
    latencies = baseline_latencies({
        "eager": [trace("a", latency_ms=4.0), trace("b", EvaluationStatus.RUNTIME_ERROR)],
        "compile": [trace("a", latency_ms=3.0, measured=False), trace("b", latency_ms=1.0)],
    })
    assert latencies == {"eager": {"a": 4.0}, "compile": {"b": 1.0}}


def test_attach_sol_fills_speedups_and_the_report_at_the_devices_peaks():
    traces = [trace("a", latency_ms=2.0), trace("b", latency_ms=5.0), trace("c", EvaluationStatus.INCORRECT_NUMERICAL),
              trace("d", measured=False)]
    attach_sol(DEFN, traces, {"eager": {"a": 4.0}, "compile": {"a": 3.0, "b": 10.0}}, device(H100_SXM))
    a, b, c, d = (t.evaluation for t in traces)
    assert a.performance.reference_latency_ms == 4.0 and a.performance.speedup_factor == pytest.approx(2.0)
    assert a.solforge.speedup_vs_compile == pytest.approx(1.5)
    assert a.solforge.baseline_latency_ms == {"eager": 4.0, "compile": 3.0}
    work = count_work(DEFN, traces[0].workload)
    sol_ms = sol_bound(work, H100_SXM.peaks()).time_ms
    assert a.solforge.sol.sol_time_ms == pytest.approx(sol_ms) and a.solforge.sol.sol_time_calibrated_ms is None
    assert a.solforge.sol.sol_fraction == pytest.approx(sol_ms / 2.0)
    assert a.solforge.sol.sol_score is not None and 0 < a.solforge.sol.sol_score < 1
    assert a.solforge.sol.achieved_gb_s == pytest.approx(work.bytes_moved / 2e-3 / 1e9)
    assert b.performance.speedup_factor == 0.0 and b.solforge.speedup_vs_compile == pytest.approx(2.0)
    assert b.solforge.sol is not None and b.solforge.sol.sol_score is None  # no eager T_b for b
    assert c.solforge.sol is None and c.solforge.baseline_latency_ms == {}
    assert d.solforge.sol is None and "not a performance measurement" in d.solforge.warnings[0]
    assert measured_latency_ms(traces[3]) is None


def test_attach_sol_uses_the_calibrated_bound_when_the_device_has_one():
    (t,) = traces = [trace("a", latency_ms=2.0)]
    attach_sol(DEFN, traces, {"eager": {"a": 4.0}}, device(H100_SXM, bandwidth_gb_s=1.0))
    sol = t.evaluation.solforge.sol
    work = count_work(DEFN, t.workload)
    assert sol.sol_time_calibrated_ms == pytest.approx(work.bytes_moved / 1e9 * 1e3)  # 1 GB/s, memory-bound
    assert sol.sol_fraction == pytest.approx(sol.sol_time_calibrated_ms / 2.0)
    assert sol.sol_time_ms < sol.sol_time_calibrated_ms


def test_sol_summary_bounds_each_workload_at_the_peaks_the_device_uses():
    workloads = [Workload(uuid="t8", axes={"T": 8}), Workload(uuid="t64", axes={"T": 64})]
    summary = sol_summary(DEFN, workloads, device(H100_SXM))
    assert summary.peaks_source == "datasheet" and set(summary.bounds) == {"t8", "t64"}
    for workload in workloads:
        expected = sol_bound(count_work(DEFN, workload), H100_SXM.peaks()).time_ms
        assert summary.sol_ms(workload.uuid) == pytest.approx(expected)
    calibrated = sol_summary(DEFN, workloads, device(H100_SXM, bandwidth_gb_s=1.0))
    assert calibrated.peaks_source == "calibrated" and calibrated.sol_ms("t8") > summary.sol_ms("t8")
    assert summary.sol_ms("missing") is None


def test_sol_summary_without_peaks_or_countable_work_says_why():
    none = sol_summary(DEFN, [Workload(uuid="t8", axes={"T": 8})], device())
    assert none.peaks_source is None and none.bounds == {} and "no SOL bound" in none.note
    broken = DEFN.model_copy(update={"reference": "def run(x, w):\n    raise RuntimeError('no meta')\n"})
    partial = sol_summary(broken, [Workload(uuid="t8", axes={"T": 8})], device(H100_SXM))
    assert partial.bounds == {} and "no bound for" in partial.note and "no meta" in partial.note
