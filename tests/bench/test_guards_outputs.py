"""output_findings refuses anything but a plain tensor with data on the device (results
carried across calls are the judge's to catch: test_guards_e2e.py)."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import torch
from exploits import entry, import_solution, make_inputs, reference, solution

from solforge.bench.guards import output_findings

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
