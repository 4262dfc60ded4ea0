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


def _full_path(monkeypatch):
    from solforge.bench import correctness

    monkeypatch.setattr(correctness, "_all_within_on_host", lambda *args: None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("case", ["within", "zeros", "one_outside", "nan", "inf_matched", "many_outside"])
def test_the_one_pass_check_of_large_outputs_says_what_the_full_path_says(monkeypatch, dtype, case):
    """`compare_outputs` on a host tensor above FAST_CHECK_MIN_ELEMENTS takes the one-pass
    numba check first; its verdict, maxima and message are the full path's."""
    pytest.importorskip("numba")
    from solforge.bench.correctness import FAST_CHECK_MIN_ELEMENTS

    d = DEFN.model_copy(deep=True)
    name = str(dtype).removeprefix("torch.")
    d.outputs = {k: v.model_copy(update={"dtype": DType(name)}) for k, v in d.outputs.items()}
    d.solforge.tolerances[name] = Tolerance(atol=1e-2, rtol=1e-2, required_matched_ratio=0.999)
    n = 2 * FAST_CHECK_MIN_ELEMENTS
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(n, generator=g).to(dtype)
    out = (ref.double() * (1 + 1e-3 * torch.randn(n, generator=g, dtype=torch.float64))).to(dtype)
    if case == "zeros":
        ref[::7], out[::7] = 0, 0
        ref[1::7], out[1::7] = 0, 1e-3  # within atol of a zero reference: no relative error counted
    elif case == "one_outside":
        out[12345] = ref[12345] + 1  # outside, but 99.9% still match
    elif case == "nan":
        out[777] = float("nan")
    elif case == "inf_matched":
        ref[3], out[3] = float("inf"), float("inf")
    elif case == "many_outside":
        out[: n // 100] += 1
    from solforge.bench.correctness import _all_within_on_host

    one_pass = _all_within_on_host(out, ref, 1e-2, 1e-2)
    assert (one_pass is not None) is (case in ("within", "zeros")), one_pass  # it answers where all are within
    fast = compare_outputs([out], [ref], d)
    _full_path(monkeypatch)
    full = compare_outputs([out], [ref], d)
    assert fast == full
    assert fast.passed is (case in ("within", "zeros", "one_outside", "inf_matched"))
