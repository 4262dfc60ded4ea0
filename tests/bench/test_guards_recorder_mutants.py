"""The op recorder and the judge's reading of it, at the edges the first tests left open:
exact call counts, a recording that leaves the call's results and torch's hooks as they
were, forbidden aten ops by name and by overload, and names that map to no aten op.

Written against the mutants of `benchmarks/mutation.py` that the first tests let through;
each test states a rule of the recorder's contract, not a line of its code.
"""

from __future__ import annotations

import torch
from exploits import RMSNORM

from solforge.bench.guards.recorder import OpRecorder, forbidden_findings, forbidden_names, torch_compute_ops
from solforge.bench.messages import OpRecord
from solforge.spec import Definition

X = torch.randn(4, 8)


def forbidding(*names: str) -> Definition:
    """RMSNORM with `names` as its forbidden calls."""
    return RMSNORM.model_copy(update={"solforge": RMSNORM.solforge.model_copy(update={"forbidden_calls": list(names)})})


def test_the_recorder_is_the_value_of_its_with_block():
    with OpRecorder() as rec:
        torch.relu(X)
    assert isinstance(rec, OpRecorder)
    assert "aten::relu" in rec.record().aten


def test_recording_leaves_what_the_call_computes_unchanged():
    # Keyword-only arguments reach the dispatcher as kwargs: a recorder that dropped them
    # would hand back float32 where float64 was asked for.
    with OpRecorder() as rec:
        wide = X.to(torch.float64)
        summed = torch.sum(X, dim=0, dtype=torch.float64)
        filled = torch.full((3,), 2.5, dtype=torch.float16)
    assert (wide.dtype, summed.dtype, filled.dtype) == (torch.float64, torch.float64, torch.float16)
    torch.testing.assert_close(summed, X.to(torch.float64).sum(0))
    assert rec.record().aten["aten::_to_copy"] >= 1


def test_aten_calls_are_counted_one_by_one_and_the_most_called_come_first():
    with OpRecorder() as rec:
        y = X + 1
        y = y + 1
        y = y + 1
        y = y * 2
    record = rec.record()
    assert record.aten["aten::add.Tensor"] == 3
    assert record.aten["aten::mul.Tensor"] == 1
    assert torch_compute_ops(record) == "aten::add.Tensor, aten::mul.Tensor"


def test_a_findings_message_names_at_most_four_compute_ops():
    record = OpRecord(aten={"aten::add.Tensor": 6, "aten::mul.Tensor": 5, "aten::exp": 4, "aten::log": 3,
                            "aten::tanh": 2, "aten::view": 9})
    assert torch_compute_ops(record) == "aten::add.Tensor, aten::mul.Tensor, aten::exp, aten::log"
    assert torch_compute_ops(record, limit=1) == "aten::add.Tensor"


def test_the_module_hook_comes_off_when_the_recorder_exits():
    hooks_before = len(torch.nn.modules.module._global_forward_pre_hooks)
    layer = torch.nn.Linear(8, 8)
    with OpRecorder() as rec:
        layer(X)
    assert len(torch.nn.modules.module._global_forward_pre_hooks) == hooks_before
    torch.nn.ReLU()(X)  # after the call: not part of its record
    assert rec.record().modules == ["torch.nn.modules.linear.Linear"]


def test_a_forbidden_torch_ops_name_becomes_its_aten_op():
    assert forbidden_names(forbidding("torch.ops.aten._softmax")) == {
        "torch.ops.aten._softmax": "torch.ops.aten._softmax", "aten::_softmax": "torch.ops.aten._softmax"}


def test_a_forbidden_name_is_also_looked_for_under_its_canonical_name():
    # torch.einsum is a Python function of torch.functional: the function mode records it there.
    names = forbidden_names(forbidding("torch.einsum"))
    assert names["torch.functional.einsum"] == "torch.einsum"
    assert names["aten::einsum"] == "torch.einsum"
    with OpRecorder() as rec:
        torch.einsum("ij,jk->ik", X, X.t())
    assert [f.message for f in forbidden_findings(rec.record(), names)][0] == \
        "forbidden call torch.einsum (reached as torch.functional.einsum), seen at run time"


def test_only_torch_names_map_to_aten_ops_and_only_to_real_ones():
    # numpy.matmul is not torch.matmul; __repr__ is an attribute of torch.ops.aten, not an op.
    names = forbidden_names(forbidding("numpy.matmul", "torch.Tensor.__repr__"))
    assert not [n for n in names if n.startswith("aten::")], names


def test_an_aten_overload_counts_as_its_forbidden_op():
    wanted = forbidden_names(forbidding("torch.ops.aten._softmax"))
    record = OpRecord(aten={"aten::_softmax.default": 1, "aten::mul.Tensor": 2})
    assert [f.message for f in forbidden_findings(record, wanted)] == [
        "forbidden call torch.ops.aten._softmax (reached as aten::_softmax.default), seen at run time"]


def test_a_profiler_broken_during_the_call_marks_the_record_not_intact():
    # The profiler is the witness of ops inside custom ops: a call that reaches it (here
    # through the heap) and breaks it must not leave a record that looks whole.
    import gc

    taken = []

    def break_the_profiler():
        torch.relu(X)
        for o in gc.get_objects():
            # type(), not isinstance(): the heap holds weak proxies, whose __class__ raises
            # ReferenceError once their object is gone (the order of the heap decides that)
            if issubclass(type(o), torch.profiler.profile) and o.profiler is not None:
                taken.append(o.profiler)
                o.profiler = None

    try:
        with OpRecorder() as rec:
            break_the_profiler()
    finally:
        for session in taken:  # end the session the broken profiler left running, for the next tests
            session.__exit__(None, None, None)
    assert taken
    record = rec.record()
    assert not record.intact
    assert [f.message for f in forbidden_findings(record, {})] == [
        "harness tamper: the op recorder was removed during the call"]
    with OpRecorder() as whole:
        torch.relu(X)
    assert whole.record().intact and "aten::relu" in whole.record().profiled  # the next recorder profiles again


def test_a_call_recorded_under_another_profiler_is_no_forged_reply():
    # On a GPU the decoy check's profiler may already run: the recorder then has no
    # profiler of its own, and only the modes' marks are asked of its record.
    from solforge.bench.guards.recorder import record_findings

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        with OpRecorder() as rec:
            torch.relu(X)
    record = rec.record()
    assert record.profiled == [] and record.intact
    assert record_findings(record, {}) == []
    # ...but a profiler list that is there must carry the mark.
    unmarked = record.model_copy(update={"profiled": ["aten::relu"]})
    assert [f.message for f in record_findings(unmarked, {})] == [
        "forged reply: the op record of a recorded call lacks the recorder's own mark in the profiler "
        "(emptied or rewritten on its way out)"]


def test_a_forbidden_function_is_carried_out_by_its_implementation_op_and_nothing_else():
    # What `implementation_ops` promises: the op that does the work (not the allocations,
    # views and copies around it), and nothing for ops made only of building blocks.
    from solforge.bench.guards.recorder import implementation_ops

    assert implementation_ops("softmax") == ("aten::_softmax",)
    assert implementation_ops("log_softmax") == ("aten::_log_softmax",)
    assert implementation_ops("layer_norm") == ("aten::native_layer_norm",)
    assert implementation_ops("scaled_dot_product_attention") == ("aten::_scaled_dot_product_flash_attention_for_cpu",)
    if hasattr(torch.ops.aten, "_fused_rms_norm"):
        assert implementation_ops("rms_norm") == ("aten::_fused_rms_norm",)
    assert implementation_ops("cross_entropy_loss") == ("aten::log_softmax",)
    for blocks in ("gelu", "silu", "mul", "sum", "mean", "_softmax", "no_such_op_anywhere"):
        assert implementation_ops(blocks) == (), blocks


def test_a_forged_reply_is_reported_first_then_what_the_record_still_shows():
    from solforge.bench.guards.recorder import record_findings

    wanted = forbidden_names(forbidding("torch.rms_norm"))
    unmarked = OpRecord(functions=["torch.rms_norm"], aten={"aten::mul.Tensor": 1})
    assert [f.guard for f in record_findings(unmarked, wanted)] == ["forged-reply", "forbidden-call"]


def test_torch_called_inside_the_solutions_own_launch_is_recorded_and_timed_apart():
    # Torch reached from inside a launch of the solution's own kernel (numba objmode) is
    # in that launch's own time too: the recorder keeps it apart (nested), and the call
    # still computes what it computes. Torch next to a launch, or inside a launch no
    # counter owns, is not nested.
    from solforge.bench.guards import launches
    from solforge.bench.guards.launches import LaunchCounter
    from solforge.spec import Language

    counter = LaunchCounter(device="cpu", language=Language("numba"), modules=frozenset(), files=frozenset())
    with OpRecorder() as inside:
        got = launches._timed([counter], torch.relu, X)
    torch.testing.assert_close(got, torch.relu(X))
    assert inside.record().nested_ms > 0 and "torch.relu" in inside.record().functions
    with OpRecorder() as outside:
        launches._timed([], torch.relu, X)
        torch.relu(X)
    assert outside.record().nested_ms == 0 and "torch.relu" in outside.record().functions
