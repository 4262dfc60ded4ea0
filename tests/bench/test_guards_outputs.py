"""output_findings refuses anything but a plain tensor with data on the device, and the
CacheDetector catches results carried across calls by address, content or call count."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import torch
from exploits import entry, import_solution, make_inputs, reference, solution

from solforge.bench.guards import CacheDetector, output_findings

# -- lazy and wrapped outputs ------------------------------------------------------------------


def call(name: str, tmp_path):
    sol = solution(name)
    return entry(import_solution(sol, tmp_path), sol)(**make_inputs(0))


def test_plain_tensors_pass():
    y = torch.ones(2, 3)
    assert output_findings(y, "cpu") == []
    assert output_findings((y, y + 1), "cpu") == []
    assert output_findings([y], "cpu") == []


@pytest.mark.parametrize("name, what", [
    ("tensor_subclass", "._Agreeable (a torch.Tensor subclass), not a torch.Tensor"),
    ("lazy_generator", "output 0 is a generator"),
])
def test_lazy_and_subclassed_exploits_are_caught(name, what, tmp_path):
    got = output_findings(call(name, tmp_path), "cpu")
    assert [f.guard for f in got] == ["lazy-output"]
    assert got[0].message.startswith("lazy or wrapped output: output 0 ") and what in got[0].message, got


def test_the_subclass_exploit_would_fool_a_comparison(tmp_path):
    # Why the guard matters: the subclass answers allclose with "equal" though it holds zeros.
    out = call("tensor_subclass", tmp_path)
    assert torch.allclose(out, reference(**make_inputs(0)))


def _fake_tensor():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        return torch.empty(4)


@pytest.mark.parametrize("make, what", [
    (lambda: (lambda: torch.ones(2)), "is a callable"),
    (lambda: concurrent.futures.Future(), "is a future"),
    (lambda: np.ones(2, dtype=np.float32), "is a numpy array"),
    (lambda: None, "is not a tensor"),
    (lambda: torch.empty(4, device="meta"), "is a meta tensor"),
    (_fake_tensor, "(a torch.Tensor subclass)"),
    (lambda: torch.nn.Parameter(torch.ones(2)), "(a torch.Tensor subclass)"),
    (lambda: torch.eye(3).to_sparse(), "has layout torch.sparse_coo"),
])
def test_non_tensor_and_dataless_outputs_are_caught(make, what):
    got = output_findings(make(), "cpu")
    assert len(got) == 1 and got[0].guard == "lazy-output" and what in got[0].message, got


def test_an_output_on_the_wrong_device_is_caught():
    got = output_findings((torch.ones(2), torch.ones(2)), "cuda:0")
    assert [f.message for f in got] == ["lazy or wrapped output: output 0 is on cpu, expected cuda:0",
                                        "lazy or wrapped output: output 1 is on cpu, expected cuda:0"]


def test_a_lazy_container_is_caught():
    class LazyTuple(tuple):
        pass

    got = output_findings(LazyTuple([torch.ones(2)]), "cpu")
    assert [f.guard for f in got] == ["lazy-output"] and "LazyTuple" in got[0].message


# -- caching across calls ----------------------------------------------------------------------


def trials(fn, detector: CacheDetector) -> dict[int, list[str]]:
    """A harness-like protocol: trials 0 and 1 on fresh buffers; trial 2 on trial 1's buffers
    with new values written in place; trial 3 on fresh buffers holding trial 0's values.
    Returns the findings' messages per trial."""
    first, second = make_inputs(10), make_inputs(11)
    plan = [
        (0, first, None),
        (1, second, None),
        (2, second, 1),
        (3, {k: v.clone() for k, v in first.items()}, None),
    ]
    found = {}
    for trial, inputs, same in plan:
        if trial == 2:
            fresh = make_inputs(12)
            for k in inputs:
                inputs[k].copy_(fresh[k])
        out = fn(**inputs)
        got = detector.observe(trial, [out], [reference(**inputs)], same_buffers_as=same, inputs=inputs.values())
        found[trial] = [f.message for f in got if f.guard == "caching"]
    return found


def load(name: str, tmp_path):
    sol = solution(name)
    return entry(import_solution(sol, tmp_path), sol)


def test_honest_kernel_is_never_a_cache(tmp_path):
    assert trials(load("honest_torch", tmp_path), CacheDetector()) == {0: [], 1: [], 2: [], 3: []}


def test_caching_by_address_is_caught(tmp_path):
    found = trials(load("cache_address", tmp_path), CacheDetector())
    assert found[0] == found[1] == found[3] == []
    assert found[2] == ["caching results across calls (by address): output 0 of trial 2 misses its reference "
                        "but matches trial 1's"]


def test_caching_by_call_count_is_caught(tmp_path):
    found = trials(load("cache_call_count", tmp_path), CacheDetector())
    assert found[0] == []
    assert found[1] == ["caching results across calls (by call count): output 0 of trial 1 misses its reference "
                        "but matches trial 0's"]


def test_caching_by_content_is_caught(tmp_path):
    found = trials(load("cache_content", tmp_path), CacheDetector())
    assert found[0] == found[1] == found[2] == []
    assert found[3] == ["caching results across calls (by content): output 0 of trial 3 is storage returned by trial 0"]


def test_a_kernel_wrong_the_same_way_twice_is_not_a_cache():
    def zeros(x, weight):
        return torch.zeros_like(x)

    assert trials(zeros, CacheDetector()) == {0: [], 1: [], 2: [], 3: []}


def test_returning_a_view_of_an_input_is_not_a_cache():
    # An op whose output aliases its input (think reshape) shares storage across calls on
    # the same buffers; passing the inputs tells the detector it is aliasing, not caching.
    detector = CacheDetector()
    x = torch.randn(4, 4)
    assert detector.observe(0, [x.view(16)], [x.clone().view(16)], inputs=[x]) == []
    x.copy_(torch.randn(4, 4))
    assert detector.observe(1, [x.view(16)], [x.clone().view(16)], same_buffers_as=0, inputs=[x]) == []


def test_earlier_outputs_are_kept_alive_so_addresses_cannot_be_reused():
    detector = CacheDetector()
    out = torch.randn(1024)
    ptr = out.untyped_storage().data_ptr()
    detector.observe(0, [out], [out.clone()])
    del out
    fresh = torch.empty(1024)
    assert fresh.untyped_storage().data_ptr() != ptr
