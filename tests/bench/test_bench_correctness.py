"""Correctness in-process: the comparison, the poison, the input check, the reference's
precision and the trial protocol, with plain callables standing in for the worker's call."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from solforge.bench.correctness import (
    Verdict,
    WorkloadContext,
    allocate_outputs,
    check_inputs_unchanged,
    compare_outputs,
    reference_expected,
    run_trials,
)
from solforge.bench.build import build_reference
from solforge.spec import DType, EvaluationStatus, Tolerance, Workload, load_definition

DEFN = load_definition(Path(__file__).parent / "kernels" / "rmsnorm_small.json")


def context(definition=DEFN, dps: bool = False, reference=None) -> WorkloadContext:
    wl = Workload(uuid="c", axes={"T": 5})
    return WorkloadContext(definition=definition, workload=wl, axes=definition.resolve_axes(wl.axes), device="cpu",
                           seed=0, dataset_root=None, dps=dps, reference=reference or build_reference(definition))


def with_tolerance(**tol):
    d = DEFN.model_copy(deep=True)
    d.solforge.tolerances["float32"] = Tolerance(**{"atol": 1e-3, "rtol": 0.0, **tol})
    return d


def test_compare_counts_matches_against_the_required_ratio():
    ctx = context(with_tolerance(required_matched_ratio=0.9))
    ref = torch.zeros(5, 64)
    out = ref.clone()
    out.view(-1)[:33] = 1.0  # 33 of 320 elements off: 89.6875% match
    result = compare_outputs([out], [ref], ctx)
    assert not result.passed and "89.6875%" in result.message and result.max_absolute_error == 1.0
    out.view(-1)[32] = 0.0  # 32 off: exactly 90%
    assert compare_outputs([out], [ref], ctx).passed


def test_nan_or_inf_where_the_reference_is_finite_fails_whatever_the_ratio():
    ctx = context(with_tolerance(required_matched_ratio=0.5))
    ref = torch.ones(5, 64)
    for bad in (float("nan"), float("inf")):
        out = ref.clone()
        out[0, 0] = bad
        result = compare_outputs([out], [ref], ctx)
        assert not result.passed and "1 elements are NaN or Inf" in result.message


def test_non_finite_reference_values_must_be_matched_exactly():
    ctx = context()
    ref = torch.ones(5, 64)
    ref[0, 0], ref[0, 1] = float("inf"), float("nan")
    out = ref.clone()
    assert compare_outputs([out], [ref], ctx).passed
    out[0, 0] = 1.0
    assert not compare_outputs([out], [ref], ctx).passed


def test_relative_error_is_over_nonzero_references():
    ctx = context()
    ref = torch.zeros(5, 64)
    ref[0, 0] = 2.0
    out = ref.clone()
    out[0, 0] = 2.0001
    out[1, 1] = 5e-5  # within atol of a zero reference: no relative error counted
    result = compare_outputs([out], [ref], ctx)
    assert result.passed
    assert result.max_relative_error == pytest.approx(5e-5, rel=1e-2)  # 2.0001 rounded to float32
    assert result.max_absolute_error == pytest.approx(1e-4, rel=1e-2)


def test_destination_buffers_are_poisoned():
    outs = allocate_outputs(context(dps=True))
    assert torch.isnan(outs["y"]).all()
    ints = DEFN.model_copy(deep=True)
    ints.outputs["y"].dtype = DType.int32
    assert (allocate_outputs(context(ints))["y"] == torch.iinfo(torch.int32).min).all()


def test_integers_must_match_exactly():
    ints = DEFN.model_copy(deep=True)
    ints.outputs["y"].dtype = DType.int32
    ctx = context(ints)
    ref = torch.arange(320, dtype=torch.int32).view(5, 64)
    out = ref.clone()
    assert compare_outputs([out], [ref], ctx).passed
    out[4, 63] += 1
    result = compare_outputs([out], [ref], ctx)
    assert not result.passed and "1 of 320 elements differ" in result.message


def test_a_modified_input_is_named():
    inputs = {"x": torch.randn(5, 64), "w": torch.randn(64), "eps": 1e-5}
    before = {k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    check_inputs_unchanged(before, inputs)
    inputs["w"][3] += 1
    with pytest.raises(Verdict) as exc:
        check_inputs_unchanged(before, inputs)
    assert exc.value.status is EvaluationStatus.INCORRECT_NUMERICAL and "input 'w'" in exc.value.message


def test_reference_runs_in_float64_on_the_cpu_and_falls_back_to_native():
    ctx = context()
    inputs = ctx.make("t", "normal")
    expected = reference_expected(ctx, inputs)
    assert ctx.reference_precision == "float64" and expected[0].dtype == torch.float32

    def float32_only(x, w):
        assert x.dtype == torch.float32, "this reference takes float32 only"
        return x * 1.0

    ctx = context(reference=float32_only)
    reference_expected(ctx, inputs)
    assert ctx.reference_precision == "native"


def test_a_reference_that_always_raises_is_a_runtime_error_naming_it():
    def broken(x, w):
        raise RuntimeError("boom")

    with pytest.raises(Verdict) as exc:
        reference_expected(context(reference=broken), context().make("t", "normal"))
    assert exc.value.status is EvaluationStatus.RUNTIME_ERROR and "reference of rmsnorm_small raised" in exc.value.message


def plain_invoke(fn):
    """The worker's invoke without the guards: call, return the outputs in order."""

    def invoke(kwargs, dps_outputs, timer=None, around=None):
        ret = fn(**kwargs, **(dps_outputs or {}))
        return list(dps_outputs.values()) if dps_outputs else [ret]

    return invoke


def honest(x, w):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + 1e-5) * w


def test_trials_make_fresh_inputs_and_end_on_the_first_buffers_refilled():
    seen = []

    def spy(x, w):
        seen.append((x.data_ptr(), x.clone()))
        return honest(x, w)

    report = run_trials(context(), plain_invoke(spy), trials=3)
    assert report.calls == 7 == len(seen) and report.reference_precision == "float64"
    assert len({ptr for ptr, _ in seen[:6]}) == 6  # every trial call at its own address
    assert seen[6][0] == seen[0][0]  # the last call reuses the first call's buffers ...
    assert not torch.equal(seen[6][1], seen[0][1])  # ... with new values
    scales = [v.abs().max().item() for _, v in seen[:4]]
    assert scales[1] > 10 * scales[0] > 100 * scales[2]  # normal, large, tiny, ...


def test_a_result_cached_by_address_fails_on_the_refilled_buffers():
    cache = {}

    def by_address(x, w):
        return cache.setdefault(x.data_ptr(), honest(x, w))

    with pytest.raises(Verdict) as exc:
        run_trials(context(), plain_invoke(by_address), trials=3)
    assert exc.value.status is EvaluationStatus.INCORRECT_NUMERICAL and exc.value.message.startswith("call 6 ")


def test_failure_reports_the_call_and_its_distribution():
    calls = []

    def wrong_on_the_fourth_call(x, w):
        calls.append(1)
        y = honest(x, w)
        return y * 1.01 if len(calls) == 4 else y

    with pytest.raises(Verdict) as exc:
        run_trials(context(), plain_invoke(wrong_on_the_fourth_call), trials=3)
    assert exc.value.message.startswith("call 3 (mixed inputs): output 'y'")
    assert exc.value.max_absolute_error > 0 and exc.value.max_relative_error == pytest.approx(0.01, rel=1e-3)
