"""Calibrated ceilings: measured on the CPU, cached per device, re-measured only when asked."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from solforge.hardware import Ceilings, calibrate, ceilings_path, detect
from solforge.hardware.calibrate import CPU_REPEATS, CUDA_REPEATS, MiB, triad_elements
from solforge.hardware.detect import identify
from solforge.spec import SpecError

# The package re-exports the function `calibrate`, which hides the module of that name.
calibrate_impl = importlib.import_module("solforge.hardware.calibrate")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("solforge-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOLFORGE_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def measured(cache_dir) -> Ceilings:
    """One real CPU calibration, shared by the tests of this module (a few seconds on 2 cores)."""
    return calibrate("cpu")


def _fake_ceilings(bandwidth_gb_s: float = 12.5) -> Ceilings:
    identity = identify("cpu")
    return Ceilings(
        device="cpu", device_name=identity.name, sm_count=identity.sm_count, dram_bandwidth_gb_s=bandwidth_gb_s,
        matmul_tflops={"float32": 0.1, "float64": 0.05}, simt_tflops=0.1,
        measured_at=f"fake-{bandwidth_gb_s}", torch_version=torch.__version__,
    )


def test_cpu_calibration_measures_positive_figures_and_keeps_samples(measured):
    assert measured.device == "cpu"
    assert measured.dram_bandwidth_gb_s > 0.1
    assert set(measured.matmul_tflops) == {"float32", "float64"}
    assert all(tflops > 0 for tflops in measured.matmul_tflops.values())
    assert measured.simt_tflops == measured.matmul_tflops["float32"]
    assert len(measured.samples_ms["dram_bandwidth_gb_s"]) == CPU_REPEATS
    assert "STREAM triad" in measured.method["dram_bandwidth_gb_s"]
    # The figure is the best sample converted with STREAM's byte count.
    n = int(measured.method["dram_bandwidth_gb_s"].split("float64, ")[1].split(" elements")[0].replace(",", ""))
    best_ms = min(measured.samples_ms["dram_bandwidth_gb_s"])
    assert measured.dram_bandwidth_gb_s == pytest.approx(3 * 8 * n / (best_ms * 1e-3) / 1e9)


def test_calibration_writes_the_cache_keyed_by_device(measured, cache_dir):
    path = ceilings_path("cpu")
    assert path.parent == cache_dir / "ceilings"
    assert path.name.endswith(f"-{identify('cpu').sm_count}cpu.json")
    assert Ceilings.model_validate(json.loads(path.read_text())) == measured


def test_a_second_call_reads_the_cache_without_measuring(measured, monkeypatch):
    def must_not_measure(identity):
        raise AssertionError("measured again although the ceilings are cached")

    monkeypatch.setattr(calibrate_impl, "_measure_cpu", must_not_measure)
    again = calibrate("cpu")
    assert again == measured
    assert again.measured_at == measured.measured_at


def test_force_measures_again_and_rewrites_the_cache(measured, monkeypatch):
    calls = []

    def fake_measure(identity):
        calls.append(identity)
        return _fake_ceilings(99.0)

    monkeypatch.setattr(calibrate_impl, "_measure_cpu", fake_measure)
    forced = calibrate("cpu", force=True)
    assert len(calls) == 1 and forced.measured_at == "fake-99.0"
    assert calibrate("cpu") == forced  # now cached
    assert len(calls) == 1
    # Put the real measurement back for the tests after this one.
    calibrate_impl._write(ceilings_path("cpu"), measured)


def test_detect_picks_up_the_cached_ceilings(measured):
    detected = detect("cpu")
    assert detected.ceilings == measured
    assert detected.spec is None and detected.datasheet_peaks() is None
    peaks = detected.calibrated_peaks()
    assert peaks is not None and peaks.source == "calibrated"
    assert peaks.dram_bandwidth_gb_s == measured.dram_bandwidth_gb_s
    assert peaks.simt_tflops == measured.simt_tflops
    assert peaks.tensor_peak_tflops("float64") == measured.matmul_tflops["float64"]
    assert peaks.tensor_peak_tflops("bfloat16") == measured.simt_tflops  # no tensor figure: SIMT
    assert "calibrated ceilings from" in detected.reason


def test_a_corrupt_or_foreign_cache_file_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibrate_impl, "_measure_cpu", lambda identity: _fake_ceilings(7.0))
    path = ceilings_path("cpu")
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    assert calibrate("cpu").dram_bandwidth_gb_s == 7.0

    foreign = _fake_ceilings(3.0).model_copy(update={"device_name": "some other CPU"})
    path.write_text(foreign.model_dump_json())
    assert detect("cpu").ceilings is None
    assert calibrate("cpu").dram_bandwidth_gb_s == 7.0


def test_unknown_device_is_a_user_error():
    with pytest.raises(SpecError, match="device 'tpu'"):
        calibrate("tpu")


def test_triad_arrays_follow_streams_four_times_the_cache_rule_within_caps():
    assert triad_elements(32 * MiB, 64 * 2**30) == 4 * 32 * MiB // 8
    assert triad_elements(480 * MiB, 64 * 2**30) == 2**30 // 8  # capped at 1 GiB per array
    assert triad_elements(480 * MiB, 2 * 2**30) == 2 * 2**30 // 8 // 8  # capped by free memory
    assert triad_elements(1 * MiB, None) == 64 * MiB // 8  # floor
    assert triad_elements(None, None) == 4 * 32 * MiB // 8  # unknown cache: assume 32 MiB


def test_calibrated_peaks_map_dtypes():
    ceilings = _fake_ceilings().model_copy(update={
        "matmul_tflops": {"bfloat16": 700.0, "float32": 50.0, "float8_e4m3fn": 1300.0}, "simt_tflops": 50.0,
    })
    peaks = ceilings.peaks()
    assert "float32" not in peaks.tensor_tflops
    assert peaks.tensor_peak_tflops("float32") == 50.0
    assert peaks.tensor_peak_tflops("float8_e5m2") == 1300.0
    assert peaks.tensor_peak_tflops("float8_e4m3") == 1300.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_calibration_reaches_plausible_ceilings(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    ceilings = calibrate("cuda", force=True)
    assert ceilings.dram_bandwidth_gb_s > 0
    assert {"bfloat16", "float16", "float32", "float64"} <= set(ceilings.matmul_tflops)
    assert ceilings.matmul_tflops["bfloat16"] > ceilings.simt_tflops  # tensor cores beat SIMT fp32
    assert len(ceilings.samples_ms["matmul_tflops.bfloat16"]) == CUDA_REPEATS
    detected = detect("cuda")
    assert detected.ceilings == ceilings
    if detected.spec is not None:
        # Measured ceilings sit at or below the datasheet (allowing boost-clock headroom).
        assert ceilings.dram_bandwidth_gb_s <= 1.05 * detected.spec.dram_bandwidth_gb_s
        assert ceilings.matmul_tflops["bfloat16"] <= 1.1 * detected.spec.bf16_tflops


def test_tf32_is_off_inside_the_matmul_measurement_and_restored_after():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with calibrate_impl._tf32_off(torch):
        assert matmul.fp32_precision == "ieee"
    assert matmul.fp32_precision == before
