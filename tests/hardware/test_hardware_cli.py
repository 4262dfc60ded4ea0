"""`solforge calibrate`: runs end to end on the CPU, prints the ceilings, their spread, the load and the
cache path; refuses, in one line, to replace a clean calibration with one taken under load."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from solforge.cli import main
from solforge.cli.calibrate import figure_text
from solforge.hardware import Ceilings, Device, LoadReading, ceilings_path, library_versions
from solforge.hardware.ceilings import write_ceilings
from solforge.hardware.kinds.cpu import CpuKind


def test_calibrate_cpu_measures_prints_and_caches(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    assert main(["calibrate", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    path = ceilings_path("cpu")
    assert path.is_file()
    cached = Ceilings.model_validate_json(path.read_text())
    # What is printed is what this very run wrote to the cache, whatever the machine's speed.
    assert f"{figure_text(cached.dram_bandwidth_gb_s, 'GB/s')}" in out
    assert f"{figure_text(cached.matmul_tflops['float32'], 'TFLOP/s')}" in out
    assert "DRAM bandwidth" in out and "matmul float32" in out
    assert f"{cached.spread['dram_bandwidth_gb_s'].relative_iqr:.1%}" in out
    assert f"load: {cached.load.summary()}" in out
    assert f"torch {library_versions()['torch']}" in out
    assert f"cache: {path}" in out
    assert "no datasheet peaks" in out


def test_figure_text_keeps_three_digits_for_small_figures():
    assert figure_text(3.3521, "GB/s") == "3.35 GB/s"
    assert figure_text(18.74, "GB/s") == "18.7 GB/s"
    assert figure_text(1234.56, "TFLOP/s") == "1,234.6 TFLOP/s"


def fake(bandwidth_gb_s: float, load: LoadReading | None) -> Ceilings:
    identity = Device.parse("cpu").identity
    return Ceilings(device="cpu", device_name=identity.name, sm_count=identity.sm_count,
                    dram_bandwidth_gb_s=bandwidth_gb_s, matmul_tflops={"float32": 0.25}, simt_tflops=0.25,
                    load=load, versions=library_versions(), measured_at="then", torch_version=torch.__version__)


def busy_measurement(self, identity):
    """Sleeps while children keep every CPU of this process busy (real load), then reports 3.35 GB/s."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
    try:
        time.sleep(1.5)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    return fake(3.35, None)


def test_under_load_the_clean_calibration_is_kept_unless_forced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    clean = fake(18.7, LoadReading(cpus=2, wall_s=3.0, other_cpu_fraction=0.01, under_load=False))
    write_ceilings(ceilings_path("cpu"), clean)
    monkeypatch.setattr(CpuKind, "measure_ceilings", busy_measurement)

    assert main(["calibrate", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("solforge: calibrate --device cpu: measured under load")
    assert "--force" in lines[0] and "Traceback" not in captured.err
    assert Ceilings.model_validate_json(ceilings_path("cpu").read_text()) == clean

    assert main(["calibrate", "--device", "cpu", "--force"]) == 0
    out = capsys.readouterr().out
    assert "3.35 GB/s" in out and "load: under load" in out and "warning: calibrated under load" in out
    assert Ceilings.model_validate_json(ceilings_path("cpu").read_text()).dram_bandwidth_gb_s == 3.35


def test_bad_device_is_one_line_and_exit_code_2(capsys):
    assert main(["calibrate", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("solforge: device 'tpu': expected 'cuda', 'cuda:N'") and "'cpu'" in err
    assert len(err.strip().splitlines()) == 1
