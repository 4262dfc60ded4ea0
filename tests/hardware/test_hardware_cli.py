"""`solforge calibrate`: runs end to end on the CPU, prints the ceilings and the cache path."""

from __future__ import annotations

import importlib

import torch

from solforge.cli import main
from solforge.hardware import Ceilings, ceilings_path
from solforge.hardware.detect import identify

calibrate_impl = importlib.import_module("solforge.hardware.calibrate")


def test_calibrate_cpu_measures_prints_and_caches(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    assert main(["calibrate", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    path = ceilings_path("cpu")
    assert path.is_file()
    cached = Ceilings.model_validate_json(path.read_text())
    assert "DRAM bandwidth" in out and "GB/s" in out
    assert "matmul float32" in out and "TFLOP/s" in out
    assert f"{cached.dram_bandwidth_gb_s:,.1f} GB/s" in out
    assert f"cache: {path}" in out
    assert "no datasheet peaks" in out


def test_force_measures_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    identity = identify("cpu")

    def fake(bandwidth_gb_s: float) -> Ceilings:
        return Ceilings(device="cpu", device_name=identity.name, sm_count=identity.sm_count,
                        dram_bandwidth_gb_s=bandwidth_gb_s, matmul_tflops={"float32": 0.25}, simt_tflops=0.25,
                        measured_at="now", torch_version=torch.__version__)

    calibrate_impl._write(ceilings_path("cpu"), fake(11.0))
    monkeypatch.setattr(calibrate_impl, "_measure_cpu", lambda identity: fake(42.0))
    assert main(["calibrate", "--device", "cpu"]) == 0
    assert "11.0 GB/s" in capsys.readouterr().out  # cached, not measured
    assert main(["calibrate", "--device", "cpu", "--force"]) == 0
    assert "42.0 GB/s" in capsys.readouterr().out


def test_bad_device_is_one_line_and_exit_code_2(capsys):
    assert main(["calibrate", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "solforge: device 'tpu': expected 'cuda', 'cuda:N' or 'cpu'"
