"""Calibrated ceilings: measured on the CPU with their spread and load, cached per device and library
versions, never replacing a clean calibration with one taken under load unless forced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from solforge.hardware import (
    CalibrationRefused,
    Ceilings,
    Device,
    LoadReading,
    calibrate,
    ceilings_path,
    detect,
    library_versions,
    overwrite_refusal,
)
from solforge.hardware.ceilings import cache_path, load_cached, write_ceilings
from solforge.hardware.kinds.cpu import CPU_ATTEMPTS, CPU_REPEATS, CpuKind, MiB, triad_elements
from solforge.hardware.kinds.cuda import CUDA_REPEATS, _tf32_off
from solforge.hardware.measure import spread_of
from solforge.spec import SpecError

CLEAN = LoadReading(cpus=2, wall_s=3.0, other_cpu_fraction=0.02, loadavg_1m_per_cpu=0.1, under_load=False)
LOADED = LoadReading(cpus=2, wall_s=3.0, other_cpu_fraction=0.6, loadavg_1m_per_cpu=1.5, under_load=True)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("solforge-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOLFORGE_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def measured(cache_dir) -> Ceilings:
    """One real CPU calibration, shared by the tests of this module (several seconds on 2 busy cores)."""
    return calibrate("cpu")


def fake_ceilings(bandwidth_gb_s: float = 12.5, load: LoadReading | None = CLEAN) -> Ceilings:
    identity = Device.parse("cpu").identity
    return Ceilings(
        device="cpu", device_name=identity.name, sm_count=identity.sm_count, dram_bandwidth_gb_s=bandwidth_gb_s,
        matmul_tflops={"float32": 0.1, "float64": 0.05}, simt_tflops=0.1, load=load, versions=library_versions(),
        measured_at=f"fake-{bandwidth_gb_s}", torch_version=torch.__version__,
    )


def test_cpu_calibration_measures_positive_figures_with_their_spread(measured):
    assert measured.device == "cpu"
    assert measured.dram_bandwidth_gb_s > 0.1
    assert set(measured.matmul_tflops) == {"float32", "float64"}
    assert all(tflops > 0 for tflops in measured.matmul_tflops.values())
    assert measured.simt_tflops == measured.matmul_tflops["float32"]
    assert set(measured.spread) == set(measured.samples_ms) == {
        "dram_bandwidth_gb_s", "matmul_tflops.float32", "matmul_tflops.float64"}
    for figure, samples in measured.samples_ms.items():
        spread = measured.spread[figure]
        assert len(samples) == CPU_REPEATS == spread.count
        assert 1 <= spread.attempts <= CPU_ATTEMPTS
        assert spread == spread_of(samples, attempts=spread.attempts)  # the spread is of the kept samples
        if not spread.stable:
            assert spread.attempts == CPU_ATTEMPTS  # an unstable figure was re-run before being marked
            assert any(w.startswith(f"{figure} unstable") for w in measured.warnings)
    assert "STREAM triad" in measured.method["dram_bandwidth_gb_s"]
    # The figure is the best sample converted with STREAM's byte count.
    n = int(measured.method["dram_bandwidth_gb_s"].split("float64, ")[1].split(" elements")[0].replace(",", ""))
    best_ms = min(measured.samples_ms["dram_bandwidth_gb_s"])
    assert measured.dram_bandwidth_gb_s == pytest.approx(3 * 8 * n / (best_ms * 1e-3) / 1e9)


def test_calibration_records_its_load_and_the_library_versions(measured):
    load = measured.load
    assert load is not None and load.cpus == len(os.sched_getaffinity(0)) and load.wall_s > 0
    assert load.other_cpu_fraction is not None and 0 <= load.other_cpu_fraction <= 1  # Linux: /proc/stat
    assert measured.versions == library_versions()
    assert set(measured.versions) == {"torch", "triton", "numba"}
    assert measured.under_load == load.under_load
    assert any("under load" in w for w in measured.warnings) == load.under_load


def test_calibration_writes_the_cache_keyed_by_device_and_versions(measured, cache_dir):
    path = ceilings_path("cpu")
    identity = Device.parse("cpu").identity
    assert path.is_relative_to(cache_dir / "ceilings" / "cpu")
    assert path.parent.name.endswith(f"-{identity.sm_count}")
    assert f"torch-{library_versions()['torch']}" in path.name
    assert Ceilings.model_validate(json.loads(path.read_text())) == measured


def test_a_calibration_made_with_other_library_versions_is_not_used(measured):
    identity = Device.parse("cpu").identity
    older = {**library_versions(), "torch": "2.12.0"}
    assert cache_path(identity, older) != cache_path(identity, library_versions())
    write_ceilings(cache_path(identity, older), fake_ceilings(1.0).model_copy(update={"versions": older}))
    assert load_cached(identity) == measured  # the 2.12 file is another key
    # A file at this key whose recorded versions differ (copied by hand) is not used either.
    path = cache_path(identity)
    write_ceilings(path, fake_ceilings(2.0).model_copy(update={"versions": older}))
    try:
        assert load_cached(identity) is None
        assert Device.parse("cpu").ceilings is None
    finally:
        write_ceilings(path, measured)
    assert Device.parse("cpu").ceilings == measured


def test_every_call_measures_and_the_next_parse_carries_the_result(measured, monkeypatch):
    calls = []

    def fake_measure(self, identity):
        calls.append(identity)
        return fake_ceilings(99.0, load=None)

    monkeypatch.setattr(CpuKind, "measure_ceilings", fake_measure)
    first = calibrate("cpu")
    assert len(calls) == 1 and first.measured_at == "fake-99.0" and first.load is not None
    assert Device.parse("cpu").ceilings == first and detect("cpu").ceilings == first
    calibrate("cpu", force=True)
    assert len(calls) == 2
    write_ceilings(ceilings_path("cpu"), measured)  # put the real measurement back


def test_device_picks_up_the_cached_ceilings(measured):
    device = Device.parse("cpu")
    assert device.ceilings == measured
    assert device.spec is None and device.datasheet_peaks() is None
    peaks = device.peaks.used
    assert peaks is not None and peaks.source == "calibrated" == device.peaks.source
    assert peaks.dram_bandwidth_gb_s == measured.dram_bandwidth_gb_s
    assert peaks.simt_tflops == measured.simt_tflops
    assert peaks.tensor_peak_tflops("float64") == measured.matmul_tflops["float64"]
    assert peaks.tensor_peak_tflops("bfloat16") == measured.simt_tflops  # no tensor figure: SIMT
    assert "calibrated ceilings from" in device.reason


def _burn_other_cpus(seconds: float):
    """A measurement that sleeps while child processes keep every CPU of this process busy: real load."""
    def measure(self, identity):
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                   for _ in os.sched_getaffinity(0)]
        try:
            time.sleep(seconds)
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
        return fake_ceilings(3.0, load=None)

    return measure


def test_a_calibration_under_load_never_replaces_a_clean_one_unless_forced(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    path = ceilings_path("cpu")
    clean = fake_ceilings(18.7, load=CLEAN)
    write_ceilings(path, clean)
    monkeypatch.setattr(CpuKind, "measure_ceilings", _burn_other_cpus(1.5))
    with pytest.raises(CalibrationRefused) as info:
        calibrate("cpu")
    message = str(info.value)
    assert "\n" not in message and "under load" in message and "--force" in message and str(path) in message
    assert Ceilings.model_validate_json(path.read_text()) == clean  # nothing was written
    forced = calibrate("cpu", force=True)
    assert forced.under_load and forced.load.other_cpu_fraction > 0.1
    assert Ceilings.model_validate_json(path.read_text()) == forced
    assert Device.parse("cpu").peaks.reason.startswith("calibrated ceilings (") and "under load" in forced.warnings[-1]


def test_a_calibration_under_load_is_written_where_nothing_clean_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(CpuKind, "measure_ceilings", _burn_other_cpus(1.0))
    first = calibrate("cpu")  # nothing cached
    assert first.under_load and Device.parse("cpu").ceilings == first
    second = calibrate("cpu")  # what is cached was itself under load
    assert second.under_load and Device.parse("cpu").ceilings == second


def test_overwrite_rule():
    clean, loaded, unknown = fake_ceilings(load=CLEAN), fake_ceilings(load=LOADED), fake_ceilings(load=None)
    assert overwrite_refusal(clean, loaded) is not None
    assert "under load" in overwrite_refusal(clean, loaded) and "clean" in overwrite_refusal(clean, loaded)
    for previous, new in [(None, loaded), (loaded, loaded), (unknown, loaded), (clean, clean), (loaded, clean),
                          (clean, unknown)]:
        assert overwrite_refusal(previous, new) is None


def test_a_corrupt_or_foreign_cache_file_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(CpuKind, "measure_ceilings", lambda self, identity: fake_ceilings(7.0, load=None))
    path = ceilings_path("cpu")
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    assert load_cached(Device.parse("cpu").identity) is None
    assert calibrate("cpu").dram_bandwidth_gb_s == 7.0

    foreign = fake_ceilings(3.0).model_copy(update={"device_name": "some other CPU"})
    write_ceilings(path, foreign)
    assert detect("cpu").ceilings is None and Device.parse("cpu").ceilings is None


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
    ceilings = fake_ceilings().model_copy(update={
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
    assert ceilings.spread["matmul_tflops.bfloat16"].count == CUDA_REPEATS
    device = Device.parse("cuda")
    assert device.ceilings == ceilings
    if device.spec is not None:
        # Measured ceilings sit at or below the datasheet (allowing boost-clock headroom).
        assert ceilings.dram_bandwidth_gb_s <= 1.05 * device.spec.dram_bandwidth_gb_s
        assert ceilings.matmul_tflops["bfloat16"] <= 1.1 * device.spec.bf16_tflops


def test_tf32_is_off_inside_the_matmul_measurement_and_restored_after():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with _tf32_off(torch):
        assert matmul.fp32_precision == "ieee"
    assert matmul.fp32_precision == before
