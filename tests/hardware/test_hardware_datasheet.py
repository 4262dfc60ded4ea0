"""The datasheet table: every figure present and sourced, dense (not sparse), looked up by operand dtype."""

from __future__ import annotations

import pytest

from solforge.hardware.datasheet import (
    A100_SXM_80GB,
    B200,
    DEVICES,
    FIGURES,
    H100_PCIE,
    H100_SXM,
    H200_SXM,
    L40S,
    MI300X,
    REQUIRED_FIGURES,
    RTX_4090,
    GiB,
    MiB,
    spec_by_key,
)

REQUIRED_DEVICES = {"h100-sxm", "h100-pcie", "h200-sxm", "b200", "a100-sxm-80gb", "a100-pcie-80gb",
                    "l40s", "l4", "rtx-4090", "rtx-5090", "mi300x"}


def test_the_table_holds_every_required_device_once():
    keys = [spec.key for spec in DEVICES]
    assert len(keys) == len(set(keys))
    assert REQUIRED_DEVICES <= set(keys)


@pytest.mark.parametrize("spec", DEVICES, ids=lambda s: s.key)
def test_every_figure_has_a_source_and_every_required_figure_a_value(spec):
    for name in FIGURES:
        assert spec.sources.get(name, "").strip(), f"{spec.key}: {name} has no source"
    for name in REQUIRED_FIGURES:
        value = getattr(spec, name)
        assert value is not None, f"{spec.key}: {name} missing"
        if isinstance(value, (int, float)):
            assert value > 0, f"{spec.key}: {name} = {value}"
    assert set(spec.sources) <= set(FIGURES), "a source for a figure the table does not have"


@pytest.mark.parametrize("spec", DEVICES, ids=lambda s: s.key)
def test_figures_are_dense_and_consistent_with_each_other(spec):
    # Dense TF32 is half dense BF16 on every tensor core in the table; a sparse figure slipped
    # into one column and not the other would break this. (3%: the HGX sheet rounds B200 TF32 to 2.2 PF.)
    assert spec.tf32_tflops == pytest.approx(spec.bf16_tflops / 2, rel=0.03)
    if spec.fp8_tflops is not None:
        assert spec.fp8_tflops == pytest.approx(2 * spec.bf16_tflops, rel=0.02)
    if spec.fp4_tflops is not None:
        assert spec.fp4_tflops >= 2 * spec.fp8_tflops
    assert spec.fp32_tflops < spec.bf16_tflops
    assert spec.fp64_tflops <= spec.fp32_tflops
    assert spec.last_level_cache_bytes >= spec.l2_bytes


def test_h100_sxm_carries_dense_not_sparse_peaks():
    # The datasheet prints 1979 TFLOPS bf16 "with sparsity"; dense is 989.5.
    assert 980 < H100_SXM.bf16_tflops < 1000
    assert 1970 < H100_SXM.fp8_tflops < 1990
    assert H100_SXM.dram_bandwidth_gb_s == 3350
    assert H100_SXM.sm_count == 132 and H100_PCIE.sm_count == 114
    assert H100_PCIE.bf16_tflops == pytest.approx(1513 / 2)
    assert B200.bf16_tflops == 2250 and B200.fp4_tflops == 9000
    assert A100_SXM_80GB.bf16_tflops == 312
    assert MI300X.bf16_tflops == pytest.approx(1307.4)


def test_geforce_stores_the_fp32_accumulate_rate():
    # RTX 4090: 330.3 TFLOPS fp16 with fp16 accumulate, 165.2 with fp32 accumulate (what matmuls use).
    assert RTX_4090.fp16_tflops == pytest.approx(165.2)
    assert RTX_4090.fp8_tflops == pytest.approx(330.3)
    assert "FP32-accumulate" in RTX_4090.notes


def test_peak_tflops_by_operand_dtype():
    # fp32 operands get the SIMT rate: TF32 would fail fp32 tolerances.
    assert H100_SXM.peak_tflops("float32") == 67.0
    assert H100_SXM.peak_tflops("float32") != H100_SXM.tf32_tflops
    # float64 uses the FP64 tensor rate where there is one, the vector rate where not.
    assert H100_SXM.peak_tflops("float64") == 67.0
    assert L40S.peak_tflops("float64") == pytest.approx(91.6 / 64)
    assert H100_SXM.peak_tflops("bfloat16") == H100_SXM.peak_tflops("float16") == 989.5
    assert H100_SXM.peak_tflops("float8_e4m3fn") == H100_SXM.peak_tflops("float8_e5m2") == 1979.0
    assert H100_SXM.peak_tflops("float8_e4m3") == 1979.0  # older spelling
    assert H100_SXM.peak_tflops("float4_e2m1") is None
    assert B200.peak_tflops("float4_e2m1") == 9000.0
    assert A100_SXM_80GB.peak_tflops("float8_e4m3fn") is None
    assert H100_SXM.peak_tflops("int8") == 1979.0
    assert H100_SXM.peak_tflops("int32") is None


def test_datasheet_peaks_fall_back_to_simt_only_where_there_is_no_tensor_path():
    peaks = L40S.peaks()
    assert peaks.source == "datasheet"
    assert peaks.simt_tflops == 91.6
    assert peaks.dram_bandwidth_gb_s == 864.0
    assert peaks.tensor_peak_tflops("float32") == 91.6
    assert peaks.tensor_peak_tflops("bfloat16") == 362.05
    # float64 must not fall back to the fp32 rate, 64x too fast.
    assert peaks.tensor_peak_tflops("float64") == pytest.approx(91.6 / 64)
    assert A100_SXM_80GB.peaks().tensor_peak_tflops("float8_e4m3fn") == 19.5  # no fp8: SIMT


def test_memory_fits_what_the_driver_reports_and_not_the_next_size():
    h100_reported = 81559 * MiB  # torch total_memory of an H100 80GB
    h200_reported = 143771 * MiB
    assert H100_SXM.memory_fits(h100_reported)
    assert not H200_SXM.memory_fits(h100_reported)
    assert H200_SXM.memory_fits(h200_reported)
    assert not H100_SXM.memory_fits(h200_reported)
    assert L40S.memory_fits(46068 * MiB)  # ECC on
    assert not H100_SXM.memory_fits(94 * GiB)  # H100 NVL


def test_no_reported_name_belongs_to_two_rows():
    names = [name.lower() for spec in DEVICES for name in spec.reported_names]
    assert len(names) == len(set(names))


def test_spec_by_key():
    assert spec_by_key("h200-sxm") is H200_SXM
    with pytest.raises(KeyError):
        spec_by_key("h300")
