"""Correctness in-process: the comparison the judge runs, the poison, and the reference's
precision (the protocol of calls is tested end to end in test_bench_evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from solforge.bench.build import build_reference
from solforge.bench.correctness import ReferenceFailed, compare_outputs, poison_, reference_expected
from solforge.bench.inputs import make_inputs
from solforge.spec import DType, Tolerance, Workload, load_definition

DEFN = load_definition(Path(__file__).parent / "kernels" / "rmsnorm_small.json")
WORKLOAD = Workload(uuid="c", axes={"T": 5})
AXES = DEFN.resolve_axes(WORKLOAD.axes)


def with_tolerance(**tol):
    d = DEFN.model_copy(deep=True)
    d.solforge.tolerances["float32"] = Tolerance(**{"atol": 1e-3, "rtol": 0.0, **tol})
    return d


def expected_of(definition, reference, inputs, precision=None):
    return reference_expected(definition, AXES, reference, inputs, "cpu", precision)


def test_compare_counts_matches_against_the_required_ratio():
    d = with_tolerance(required_matched_ratio=0.9)
    ref = torch.zeros(5, 64)
    out = ref.clone()
    out.view(-1)[:33] = 1.0  # 33 of 320 elements off: 89.6875% match
    result = compare_outputs([out], [ref], d)
    assert not result.passed and "89.6875%" in result.message and result.max_absolute_error == 1.0
    assert "33 of 320 elements outside" in result.message and result.failed_elements == 33
    out.view(-1)[32] = 0.0  # 32 off: exactly 90%
    assert compare_outputs([out], [ref], d).passed


def test_nan_or_inf_where_the_reference_is_finite_fails_whatever_the_ratio():
    d = with_tolerance(required_matched_ratio=0.5)
    ref = torch.ones(5, 64)
    for bad in (float("nan"), float("inf")):
        out = ref.clone()
        out[0, 0] = bad
        result = compare_outputs([out], [ref], d)
        assert not result.passed and "1 of 320 elements are NaN or Inf" in result.message


def test_non_finite_reference_values_must_be_matched_exactly():
    d = DEFN
    ref = torch.ones(5, 64)
    ref[0, 0], ref[0, 1] = float("inf"), float("nan")
    out = ref.clone()
    assert compare_outputs([out], [ref], d).passed
    out[0, 0] = 1.0
    assert not compare_outputs([out], [ref], d).passed


def test_relative_error_is_over_nonzero_references():
    d = DEFN
    ref = torch.zeros(5, 64)
    ref[0, 0] = 2.0
    out = ref.clone()
    out[0, 0] = 2.0001
    out[1, 1] = 5e-5  # within atol of a zero reference: no relative error counted
    result = compare_outputs([out], [ref], d)
    assert result.passed
    assert result.max_relative_error == pytest.approx(5e-5, rel=1e-2)  # 2.0001 rounded to float32
    assert result.max_absolute_error == pytest.approx(1e-4, rel=1e-2)


def test_the_message_names_the_worst_failing_element_not_the_largest_error():
    # Element 0 has the largest absolute error but a large reference, so it is within
    # atol + rtol * |ref|; element 1 has a small error on a tiny reference and fails.
    d = with_tolerance(atol=1e-3, rtol=1e-2)
    ref = torch.full((5, 64), 1e-4)
    ref[0, 0] = 1000.0
    out = ref.clone()
    out[0, 0] = 1005.0  # error 5, allowed 10.001
    out[0, 1] = 0.5  # error ~0.5, allowed ~0.001: the one that fails
    result = compare_outputs([out], [ref], d)
    assert not result.passed and "1 of 320 elements outside" in result.message
    assert "worst failing at flat index 1: 0.5 vs reference 0.0001" in result.message


def test_destination_buffers_are_poisoned():
    assert torch.isnan(poison_(torch.empty(5, 64))).all()
    assert (poison_(torch.empty(5, dtype=torch.int32)) == torch.iinfo(torch.int32).min).all()
    assert (poison_(torch.empty(4, dtype=torch.float8_e4m3fn)).view(torch.uint8) == 0x7F).all()


def test_integers_must_match_exactly():
    ints = DEFN.model_copy(deep=True)
    ints.outputs["y"].dtype = DType.int32
    d = ints
    ref = torch.arange(320, dtype=torch.int32).view(5, 64)
    out = ref.clone()
    assert compare_outputs([out], [ref], d).passed
    out[4, 63] += 1
    result = compare_outputs([out], [ref], d)
    assert not result.passed and "1 of 320 elements differ" in result.message and "flat index 319" in result.message


def test_reference_runs_in_float64_on_the_cpu_and_falls_back_to_native():
    inputs = make_inputs(DEFN, WORKLOAD, AXES, 0, "normal", "cpu", None)
    expected, precision = expected_of(DEFN, build_reference(DEFN), inputs)
    assert precision == "float64" and expected[0].dtype == torch.float32

    def float32_only(x, w):
        assert x.dtype == torch.float32, "this reference takes float32 only"
        return x * 1.0

    assert expected_of(DEFN, float32_only, inputs)[1] == "native"


def test_a_reference_that_always_raises_is_named():
    def broken(x, w):
        raise RuntimeError("boom")

    inputs = make_inputs(DEFN, WORKLOAD, AXES, 0, "normal", "cpu", None)
    with pytest.raises(ReferenceFailed, match="the reference of rmsnorm_small raised RuntimeError: boom"):
        expected_of(DEFN, broken, inputs)
