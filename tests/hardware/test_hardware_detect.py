"""Device matching by measurable properties (never fooled by the name), and CPU detection."""

from __future__ import annotations

import pytest
import torch

from solforge.hardware import detect, match_device
from solforge.hardware.datasheet import (
    A100_PCIE_80GB,
    A100_SXM_80GB,
    B200,
    H100_PCIE,
    H100_SXM,
    H200_SXM,
    L40,
    L40S,
    MI300X,
    GiB,
    MiB,
)
from solforge.hardware.detect import cpu_last_level_cache_bytes, parse_cache_size, parse_device
from solforge.hardware.nvml import MemoryInterface
from solforge.spec import SpecError

H100_MEMORY = 81559 * MiB  # what torch reports for an 80 GB H100


def test_h100_sxm_name_and_properties_map_to_sxm_peaks():
    spec, reason = match_device("NVIDIA H100 80GB HBM3", (9, 0), 132, H100_MEMORY)
    assert spec is H100_SXM
    assert spec.peaks().tensor_peak_tflops("bfloat16") == 989.5
    assert "matched" in reason and "132 SMs" in reason
    assert "note" not in reason


def test_the_sxm_name_on_a_pcie_board_gets_pcie_peaks():
    # The name says SXM; 114 SMs say PCIe. Properties win.
    spec, reason = match_device("NVIDIA H100 80GB HBM3", (9, 0), 114, H100_MEMORY)
    assert spec is H100_PCIE
    assert spec.peaks().tensor_peak_tflops("bfloat16") == pytest.approx(756.5)
    assert "not a name" in reason


def test_h100_pcie_by_its_own_name():
    spec, reason = match_device("NVIDIA H100 PCIe", (9, 0), 114, H100_MEMORY)
    assert spec is H100_PCIE and "note" not in reason


def test_h200_and_h100_are_told_apart_by_memory():
    assert match_device("NVIDIA H200", (9, 0), 132, 143771 * MiB)[0] is H200_SXM
    # An H100 name with 141 GB of memory is an H200, and the other way round.
    assert match_device("NVIDIA H100 80GB HBM3", (9, 0), 132, 143771 * MiB)[0] is H200_SXM
    assert match_device("NVIDIA H200", (9, 0), 132, H100_MEMORY)[0] is H100_SXM


@pytest.mark.parametrize(
    "name, cc, sms, memory",
    [
        ("NVIDIA GeForce RTX 4080", (8, 9), 76, 16 * GiB),
        ("NVIDIA H100 NVL", (9, 0), 132, 95830 * MiB),  # 94 GB: not in the table
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", (9, 0), 16, 9984 * MiB),  # a MIG slice
        ("NVIDIA A100-SXM4-40GB", (8, 0), 108, 40536 * MiB),
        ("NVIDIA H100 80GB HBM3", (8, 0), 132, H100_MEMORY),  # wrong compute capability
    ],
)
def test_unknown_properties_give_no_spec_and_say_so(name, cc, sms, memory):
    spec, reason = match_device(name, cc, sms, memory)
    assert spec is None
    assert reason.startswith(f"unknown device '{name}' (sm_{cc[0]}{cc[1]}, {sms} SMs,")
    assert "no datasheet peaks" in reason and "solforge calibrate" in reason


def test_unknown_device_message_reads_as_specified():
    _, reason = match_device("NVIDIA GeForce RTX 4080", (8, 9), 76, 16 * GiB)
    assert reason == ("unknown device 'NVIDIA GeForce RTX 4080' (sm_89, 76 SMs, 16 GiB): no datasheet peaks; "
                      "run `solforge calibrate` for measured ceilings")


def test_same_properties_are_split_by_name_and_otherwise_left_ambiguous():
    a100_memory = 81251 * MiB
    assert match_device("NVIDIA A100-SXM4-80GB", (8, 0), 108, a100_memory)[0] is A100_SXM_80GB
    assert match_device("NVIDIA A100 80GB PCIe", (8, 0), 108, a100_memory)[0] is A100_PCIE_80GB
    spec, reason = match_device("NVIDIA A100 80GB", (8, 0), 108, a100_memory)
    assert spec is None and reason.startswith("ambiguous device")
    assert match_device("NVIDIA L40S", (8, 9), 142, 46068 * MiB)[0] is L40S
    assert match_device("NVIDIA L40", (8, 9), 142, 46068 * MiB)[0] is L40


def test_the_memory_interface_outranks_the_name():
    a100_memory = 81251 * MiB
    sxm_interface = MemoryInterface(bus_width_bits=5120, max_mem_clock_mhz=1593)  # 2039 GB/s
    pcie_interface = MemoryInterface(bus_width_bits=5120, max_mem_clock_mhz=1512)  # 1935 GB/s
    spec, reason = match_device("NVIDIA A100 80GB PCIe", (8, 0), 108, a100_memory, memory_interface=sxm_interface)
    assert spec is A100_SXM_80GB and "memory interface" in reason
    assert match_device("NVIDIA A100 80GB", (8, 0), 108, a100_memory, memory_interface=pcie_interface)[0] \
        is A100_PCIE_80GB


def test_an_interface_that_fits_no_candidate_does_not_pick_one():
    # RTX 6000 Ada: the L40/L40S properties, 960 GB/s, a name neither row reports.
    interface = MemoryInterface(bus_width_bits=384, max_mem_clock_mhz=10001)
    spec, reason = match_device("NVIDIA RTX 6000 Ada Generation", (8, 9), 142, 47 * GiB, memory_interface=interface)
    assert spec is None and "ambiguous" in reason


def test_other_vendors_and_generations_match():
    assert match_device("AMD Instinct MI300X", (9, 4), 304, 191 * GiB)[0] is MI300X
    assert match_device("NVIDIA B200", (10, 0), 148, 183359 * MiB)[0] is B200


def test_parse_device():
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("cuda:3") == ("cuda", 3)
    assert parse_device("cpu") == ("cpu", 0)
    for bad in ("gpu", "cpu:0", "cuda:x", ""):
        with pytest.raises(SpecError, match=r"expected 'cuda', 'cuda:N'(,| or) 'cpu'"):
            parse_device(bad)


def test_parse_cache_size():
    assert parse_cache_size("48K\n") == 48 * 1024
    assert parse_cache_size("32M") == 32 * MiB
    assert parse_cache_size("1024") == 1024
    with pytest.raises(ValueError):
        parse_cache_size("lots")


def test_cpu_last_level_cache_is_the_largest_data_cache(tmp_path):
    for index, (kind, size) in enumerate([("Data", "48K"), ("Instruction", "64M"), ("Unified", "2048K"),
                                          ("Unified", "32768K"), ("Unified", "garbage")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "type").write_text(kind + "\n")
        (folder / "size").write_text(size + "\n")
    assert cpu_last_level_cache_bytes(tmp_path) == 32 * MiB  # not the 64M instruction cache
    assert cpu_last_level_cache_bytes(tmp_path / "missing") is None


def test_detect_cpu_without_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(tmp_path))
    detected = detect("cpu")
    assert detected.device == "cpu"
    assert detected.spec is None and detected.datasheet_peaks() is None
    assert detected.ceilings is None and detected.calibrated_peaks() is None
    assert "not calibrated" in detected.reason
    assert detected.sm_count >= 1 and detected.name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_detect_cuda_without_cuda_is_a_one_line_user_error():
    with pytest.raises(SpecError, match="no CUDA device is available") as info:
        detect("cuda")
    assert "\n" not in str(info.value)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_detect_cuda_reads_the_device():
    detected = detect("cuda")
    props = torch.cuda.get_device_properties(0)
    assert detected.name == props.name and detected.sm_count == props.multi_processor_count
    assert detected.l2_bytes == props.L2_cache_size
    assert detected.reason
