"""sol_bound, sol_score, sol_fraction and sol_report, against hand arithmetic."""

from __future__ import annotations

import math

import pytest

from solforge.hardware import Peaks
from solforge.roofline import Binding, Work, count_work, sol_bound, sol_fraction, sol_report, sol_score, sol_time_ms
from solforge.spec import Definition, SolReport, Workload

# H100 SXM-like dense peaks (datasheet: 989 bf16 and 1979 fp8 TFLOP/s, 67 fp32 TFLOP/s, 3.35 TB/s).
H100_LIKE = Peaks(
    tensor_tflops={"bfloat16": 989.0, "float16": 989.0, "float8_e4m3fn": 1979.0},
    simt_tflops=67.0,
    dram_bandwidth_gb_s=3350.0,
    source="datasheet",
)
# What a device might reach when calibrated: lower than its datasheet.
CALIBRATED = Peaks(tensor_tflops={"bfloat16": 700.0}, simt_tflops=50.0, dram_bandwidth_gb_s=3000.0, source="calibrated")


def gemm_work(n: int) -> Work:
    definition = Definition.model_validate({
        "name": "gemm", "op_type": "gemm", "axes": {"N": {"type": "var"}},
        "inputs": {"a": {"shape": ["N", "N"], "dtype": "bfloat16"}, "b": {"shape": ["N", "N"], "dtype": "bfloat16"}},
        "outputs": {"c": {"shape": ["N", "N"], "dtype": "bfloat16"}},
        "reference": "def run(a, b):\n    return a @ b\n",
    })
    return count_work(definition, Workload(uuid="g", axes={"N": n}))


def rmsnorm_work(tokens: int, hidden: int) -> Work:
    definition = Definition.model_validate({
        "name": "rmsnorm", "op_type": "rmsnorm", "axes": {"T": {"type": "var"}, "H": {"type": "const", "value": hidden}},
        "inputs": {"x": {"shape": ["T", "H"], "dtype": "bfloat16"}, "w": {"shape": ["H"], "dtype": "bfloat16"}},
        "outputs": {"y": {"shape": ["T", "H"], "dtype": "bfloat16"}},
        "reference": (
            "import torch\n\ndef run(x, w):\n    xf = x.float()\n"
            "    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)\n"
            "    return (y * w.float()).to(x.dtype)\n"
        ),
    })
    return count_work(definition, Workload(uuid="r", axes={"T": tokens}))


# -- the bound ---------------------------------------------------------------------------

def test_large_gemm_is_compute_bound():
    n = 8192
    bound = sol_bound(gemm_work(n), H100_LIKE)
    assert bound.binding is Binding.compute
    assert bound.compute_ms == pytest.approx(2 * n**3 / 989e12 * 1e3)  # about 1.11 ms
    assert bound.memory_ms == pytest.approx(2 * 3 * n * n / 3350e9 * 1e3)  # about 0.12 ms
    assert bound.time_ms == bound.compute_ms
    assert sol_time_ms(gemm_work(n), H100_LIKE) == bound.time_ms


def test_rmsnorm_is_memory_bound():
    tokens, hidden = 16384, 4096
    work = rmsnorm_work(tokens, hidden)
    bound = sol_bound(work, H100_LIKE)
    assert bound.binding is Binding.memory
    assert bound.memory_ms == pytest.approx(2 * (2 * tokens * hidden + hidden) / 3350e9 * 1e3)
    assert bound.compute_ms == pytest.approx(work.other_flops / 67e12 * 1e3)
    assert bound.time_ms == bound.memory_ms > bound.compute_ms > 0


def test_compute_side_adds_every_dtype_and_the_simt_work():
    work = Work({"bfloat16": 989 * 10**9, "float8_e4m3fn": 1979 * 10**9}, other_flops=67 * 10**9, bytes_moved=0)
    bound = sol_bound(work, H100_LIKE)
    assert bound.compute_ms == pytest.approx(3.0)  # 1 ms at each of the three peaks
    assert bound.memory_ms == 0.0
    assert bound.binding is Binding.compute
    tie = sol_bound(Work({}, 67 * 10**9, 3350 * 10**6), H100_LIKE)  # 1 ms each side
    assert tie.binding is Binding.memory


def test_non_positive_peak_is_refused():
    broken = Peaks(tensor_tflops={"bfloat16": 0.0}, simt_tflops=67.0, dram_bandwidth_gb_s=3350.0, source="calibrated")
    with pytest.raises(ValueError, match="peaks 'calibrated': the bfloat16 tensor peak must be a positive number"):
        sol_bound(Work({"bfloat16": 1}, 0, 1), broken)


# -- score and fraction ------------------------------------------------------------------

def test_sol_score_anchors():
    assert sol_score(latency_ms=2.0, baseline_ms=2.0, sol_ms=0.5) == pytest.approx(0.5)
    assert sol_score(latency_ms=0.5, baseline_ms=2.0, sol_ms=0.5) == 1.0
    # Halfway from the baseline to SOL: 1 / (1 + 0.75 / 1.5).
    assert sol_score(latency_ms=1.25, baseline_ms=2.0, sol_ms=0.5) == pytest.approx(2 / 3)
    assert sol_score(latency_ms=3.5, baseline_ms=2.0, sol_ms=0.5) == pytest.approx(1 / 3)


def test_sol_score_is_capped_below_sol():
    assert sol_score(latency_ms=0.1, baseline_ms=2.0, sol_ms=0.5) == 1.0
    assert sol_fraction(latency_ms=0.1, sol_ms=0.5) == 1.0


def test_sol_score_is_monotone_decreasing_in_latency():
    latencies_ms = [0.5 + 0.05 * i for i in range(200)]
    scores = [sol_score(t, baseline_ms=2.0, sol_ms=0.5) for t in latencies_ms]
    assert all(a > b for a, b in zip(scores[1:], scores[2:]))
    assert scores[0] == 1.0 and 0.0 < scores[-1] < 0.5


@pytest.mark.parametrize("baseline_ms", [0.5, 0.3])
def test_baseline_at_or_below_sol_falls_back_to_the_fraction(baseline_ms):
    assert sol_score(latency_ms=2.0, baseline_ms=baseline_ms, sol_ms=0.5) == pytest.approx(0.25)
    assert sol_score(latency_ms=0.4, baseline_ms=baseline_ms, sol_ms=0.5) == 1.0


def test_sol_fraction():
    assert sol_fraction(latency_ms=2.0, sol_ms=0.5) == pytest.approx(0.25)
    assert sol_fraction(latency_ms=0.5, sol_ms=0.5) == 1.0
    assert sol_fraction(latency_ms=1.0, sol_ms=0.0) == 0.0


@pytest.mark.parametrize(("latency_ms", "baseline_ms", "sol_ms"), [
    (0.0, 1.0, 0.5), (-1.0, 1.0, 0.5), (math.nan, 1.0, 0.5), (1.0, math.inf, 0.5), (1.0, 1.0, -0.1),
])
def test_invalid_times_are_refused(latency_ms, baseline_ms, sol_ms):
    with pytest.raises(ValueError, match="must be a finite"):
        sol_score(latency_ms, baseline_ms, sol_ms)


# -- the report --------------------------------------------------------------------------

def test_report_with_datasheet_peaks_only():
    work = gemm_work(4096)
    sol_ms = sol_time_ms(work, H100_LIKE)
    report = sol_report(work, latency_ms=2 * sol_ms, baseline_ms=3 * sol_ms, datasheet=H100_LIKE, calibrated=None)
    assert isinstance(report, SolReport)
    assert report.tensor_flops == {"bfloat16": 2 * 4096**3}
    assert report.bytes_moved == 2 * 3 * 4096 * 4096
    assert report.sol_time_ms == pytest.approx(sol_ms)
    assert report.sol_time_calibrated_ms is None
    assert report.binding == "compute"
    assert report.sol_fraction == pytest.approx(0.5)
    assert report.sol_score == pytest.approx(1 / (1 + 1 / 2))
    latency_s = 2 * sol_ms * 1e-3
    assert report.achieved_tflops == pytest.approx(2 * 4096**3 / latency_s / 1e12)
    assert report.achieved_gb_s == pytest.approx(2 * 3 * 4096 * 4096 / latency_s / 1e9)
    assert report.audit is None
    assert SolReport.model_validate_json(report.model_dump_json()) == report


def test_report_scores_against_the_calibrated_bound_when_given():
    work = gemm_work(4096)
    datasheet_ms, calibrated_ms = sol_time_ms(work, H100_LIKE), sol_time_ms(work, CALIBRATED)
    assert calibrated_ms > datasheet_ms
    report = sol_report(work, latency_ms=2 * calibrated_ms, baseline_ms=None, datasheet=H100_LIKE, calibrated=CALIBRATED)
    assert report.sol_time_ms == pytest.approx(datasheet_ms)
    assert report.sol_time_calibrated_ms == pytest.approx(calibrated_ms)
    assert report.sol_fraction == pytest.approx(0.5)
    assert report.sol_score is None  # no baseline


def test_report_below_sol_is_capped_and_audited():
    work = rmsnorm_work(8192, 4096)
    sol_ms = sol_time_ms(work, H100_LIKE)
    report = sol_report(work, latency_ms=0.8 * sol_ms, baseline_ms=4 * sol_ms, datasheet=H100_LIKE, calibrated=None)
    assert report.binding == "memory"
    assert report.sol_fraction == 1.0 and report.sol_score == 1.0
    assert report.audit is not None
    assert report.audit.startswith(f"measured {0.8 * sol_ms:.4g} ms, below the SOL bound {sol_ms:.4g} ms (datasheet peaks)")
    baseline_below = sol_report(work, latency_ms=2 * sol_ms, baseline_ms=0.5 * sol_ms, datasheet=H100_LIKE, calibrated=None)
    assert baseline_below.audit is not None and baseline_below.audit.startswith("baseline measured")


def test_report_of_a_failed_run_holds_counts_and_bounds_only():
    work = gemm_work(1024)
    report = sol_report(work, latency_ms=None, baseline_ms=1.0, datasheet=H100_LIKE, calibrated=CALIBRATED)
    assert report.tensor_flops == {"bfloat16": 2 * 1024**3}
    assert report.sol_time_ms is not None and report.sol_time_calibrated_ms is not None
    assert report.binding is not None
    assert (report.sol_fraction, report.sol_score, report.achieved_tflops, report.achieved_gb_s, report.audit) == (
        None, None, None, None, None
    )


def test_report_for_an_unknown_device_has_no_bound():
    work = gemm_work(1024)
    report = sol_report(work, latency_ms=1.0, baseline_ms=2.0, datasheet=None, calibrated=None)
    assert (report.sol_time_ms, report.sol_time_calibrated_ms, report.binding) == (None, None, None)
    assert (report.sol_fraction, report.sol_score) == (None, None)
    assert report.achieved_tflops == pytest.approx(2 * 1024**3 / 1e-3 / 1e12)
