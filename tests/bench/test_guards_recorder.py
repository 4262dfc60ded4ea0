"""The op recorder and the judge's reading of it, in-process: every way of reaching a
forbidden op is seen and named, honest ops are not; decoys by time share."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exploits import RMSNORM

from solforge.bench.guards.recorder import (
    NON_COMPUTE_ATEN,
    OpRecorder,
    canonical_name,
    forbidden_findings,
    forbidden_names,
    implementation_ops,
    record_findings,
    torch_compute_ops,
)
from solforge.bench.messages import OpRecord

X, W = torch.randn(4, 64), torch.rand(64) + 0.5
WANTED = forbidden_names(RMSNORM)  # forbids torch.nn.functional.rms_norm and torch.rms_norm


def recorded(fn) -> OpRecord:
    rec = OpRecorder()
    with rec:
        fn()
    return rec.record()


def guards_of(record: OpRecord) -> list[str]:
    return [f.message for f in forbidden_findings(record, WANTED)]


def test_canonical_names_are_the_same_however_the_callable_is_spelled():
    assert canonical_name(torch.Tensor.softmax) == "torch.Tensor.softmax"
    assert canonical_name(torch.softmax) == "torch.softmax"
    assert canonical_name(F.gelu) == canonical_name(torch._C._nn.gelu)
    assert canonical_name(torch.ops.aten._softmax.default) == "aten::_softmax"
    assert canonical_name(torch.ops.aten._softmax) == "aten::_softmax"
    assert canonical_name(torch.nn.RMSNorm) == "torch.nn.modules.normalization.RMSNorm"


def test_forbidden_names_cover_aliases_and_aten_ops():
    assert WANTED["torch.nn.functional.rms_norm"] == "torch.nn.functional.rms_norm"
    assert WANTED["torch.rms_norm"] == "torch.rms_norm"
    assert WANTED["aten::rms_norm"] in ("torch.nn.functional.rms_norm", "torch.rms_norm")


@pytest.mark.skipif(not hasattr(torch, "_fused_rms_norm"), reason="this torch has no aten::_fused_rms_norm")
def test_a_forbidden_function_is_forbidden_by_its_implementation():
    """torch.rms_norm runs aten::_fused_rms_norm: calling that, by any name, is the forbidden call."""
    assert WANTED.get("aten::_fused_rms_norm") in ("torch.nn.functional.rms_norm", "torch.rms_norm")
    record = recorded(lambda: torch._fused_rms_norm(X, [64], W, 1e-6))
    assert any("reached as aten::_fused_rms_norm" in m for m in guards_of(record)), record


def test_building_blocks_are_never_an_implementation():
    """The pointwise ops and reductions an honest kernel is written in stay allowed;
    the fused kernels of softmax and layer_norm are implementations."""
    assert not {"aten::mean", "aten::mul", "aten::rsqrt", "aten::pow", "aten::add"} & set(WANTED)
    assert implementation_ops("mul") == () and implementation_ops("mean") == ()
    assert implementation_ops("softmax") == ("aten::_softmax",)
    assert implementation_ops("layer_norm") == ("aten::native_layer_norm",)
    assert implementation_ops("no_such_op") == ()


def test_a_sample_call_that_crashes_costs_a_child_not_the_judge(tmp_path):
    """aten::native_batch_norm's sample (eval mode, no running statistics) segfaults
    the process that calls it; the norm definitions forbid batch_norm, so the judge
    once died building its forbidden names. Run in a process of its own, so that a
    regression crashes that process, not the test session: implementation_ops returns,
    and a definition that forbids batch_norm still gets its names."""
    import subprocess
    import sys

    probe = (
        "from solforge.bench.guards.recorder import implementation_ops\n"
        "print('batch_norm:', implementation_ops('native_batch_norm'), implementation_ops('batch_norm'))\n"
        "print('softmax:', implementation_ops('softmax'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch_norm:" in done.stdout
    assert "softmax: ('aten::_softmax',)" in done.stdout  # the overloads after a crash are still sampled


def test_every_way_to_reach_the_forbidden_op_is_named():
    ways = {
        "functional": lambda: F.rms_norm(X, (64,), W, 1e-6),
        "torch": lambda: torch.rms_norm(X, (64,), W, 1e-6),
        "module": lambda: torch.nn.RMSNorm(64, eps=1e-6)(X),
        "computed name": lambda: vars(F)["rms" + "_norm"](X, (64,), W, 1e-6),
        "aten op": lambda: torch.ops.aten.rms_norm(X, [64], W, 1e-6),
    }
    for way, fn in ways.items():
        messages = guards_of(recorded(fn))
        assert any(m.startswith("forbidden call torch.") and m.endswith("seen at run time") for m in messages), way


def test_honest_math_is_not_a_forbidden_call():
    record = recorded(lambda: X * torch.rsqrt(X.pow(2).mean(-1, keepdim=True) + 1e-6) * W)
    assert guards_of(record) == []
    assert "aten::mul.Tensor" in record.aten and record.compute_ms > 0
    assert "aten::rsqrt" in torch_compute_ops(record) or "aten::mul.Tensor" in torch_compute_ops(record)


def test_allocations_and_views_are_not_compute():
    record = recorded(lambda: torch.empty_like(X).view(-1).reshape(4, 64).t())
    assert record.compute_ms == 0.0
    assert {"empty_like", "view", "t"} <= NON_COMPUTE_ATEN
    assert torch_compute_ops(record) == "none"


def test_the_profiler_sees_ops_inside_a_custom_op():
    @torch.library.custom_op("recordertest::norm", mutates_args=())
    def hidden(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.rms_norm(x, [x.shape[-1]], w, 1e-6)

    record = recorded(lambda: hidden(X, W))
    assert "aten::rms_norm" in record.profiled
    assert any("reached as aten::rms_norm" in m for m in guards_of(record))


def test_a_recorder_removed_during_the_call_is_reported():
    def pop_modes():
        torch._C._pop_torch_function_stack()

    record = recorded(pop_modes)
    assert not record.intact
    assert any(m.startswith("harness tamper: the op recorder was removed") for m in guards_of(record))


def test_a_record_the_recorder_made_carries_its_mark_in_every_witness():
    """The judge's reading of an honest record: no forged-reply finding, and the mark is
    neither compute (decoy share) nor a forbidden call."""
    record = recorded(lambda: X * W)
    assert record_findings(record, WANTED) == []
    assert "solforge::recorded" in record.profiled
    assert recorded(lambda: torch.empty_like(X)).compute_ms == 0.0


def test_a_missing_or_emptied_record_is_a_forged_reply():
    """A reply rewritten on its way out of the solution's process: the record dropped,
    replaced by an empty one, or its profiler list stripped to hide an op."""
    honest = recorded(lambda: torch.rms_norm(X, [64], W, 1e-6))
    stripped = honest.model_copy(update={"profiled": ["aten::mul"], "functions": [], "aten": {}})
    for record, phrase in ((None, "came without its op record"),
                           (OpRecord(functions=["torch.Tensor.mul"], aten={"aten::mul.Tensor": 1}),
                            "lacks the recorder's own mark in the torch function mode, the dispatch mode"),
                           (stripped, "lacks the recorder's own mark")):
        found = record_findings(record, WANTED)
        assert found and found[0].guard == "forged-reply", found
        assert phrase in found[0].message, found
    assert any("forbidden call" in f.message for f in record_findings(honest, WANTED))
