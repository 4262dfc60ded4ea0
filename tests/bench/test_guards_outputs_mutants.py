"""output_findings at its edges: the device rule in each direction, a tensor that escaped a
functorch transform, and a non-tensor named for what it is (a half-future is no future).

Written against the mutants of `benchmarks/mutation.py` that the first tests let through;
each test states a rule of the guard's docstring, not a line of its code.
"""

from __future__ import annotations

import types

import pytest
import torch

from solforge.bench.guards import output_findings


def messages(outputs: object, device: str) -> list[str]:
    return [f.message for f in output_findings(outputs, device)]


def test_a_device_type_that_differs_is_refused_whatever_the_index():
    # "cuda" names no index: the type alone decides, and cpu is not cuda.
    assert messages(torch.ones(2), "cuda") == ["lazy or wrapped output: output 0 is on cpu, expected cuda"]


def test_an_index_named_by_the_expected_device_must_match():
    # The docstring's rule: an index differs when `expected_device` names one. A CPU tensor
    # carries no index (torch reports `cpu`, never `cpu:0`), so it does not match "cpu:0"
    # (torch itself holds torch.device("cpu") != torch.device("cpu:0")).
    assert torch.ones(2).device != torch.device("cpu:0")
    assert messages(torch.ones(2), "cpu:0") == ["lazy or wrapped output: output 0 is on cpu, expected cpu:0"]
    assert messages(torch.ones(2), "cpu") == []


@pytest.mark.cuda
def test_an_indexless_expected_device_accepts_any_index_and_a_named_one_refuses_another():
    y = torch.ones(2, device="cuda:0")
    assert messages(y, "cuda") == []
    assert messages(y, "cuda:0") == []
    if torch.cuda.device_count() > 1:
        assert messages(y, "cuda:1") == ["lazy or wrapped output: output 0 is on cuda:0, expected cuda:1"]


def test_a_tensor_wrapped_by_a_functorch_transform_is_refused():
    # Inside vmap the argument is a plain torch.Tensor by type, but a batched wrapper: what
    # escapes the transform holds no data of its own.
    seen: list[list[str]] = []

    def body(t: torch.Tensor) -> torch.Tensor:
        assert type(t) is torch.Tensor
        seen.append(messages(t, "cpu"))
        return t

    torch.func.vmap(body)(torch.ones(3, 2))
    assert seen == [["lazy or wrapped output: output 0 is a functorch-wrapped tensor, not a plain torch.Tensor"]]


def test_a_non_tensor_is_named_for_what_it_is():
    # A future needs both `result` and `done`; half of that is just some object.
    half = types.SimpleNamespace(result=1)
    other_half = types.SimpleNamespace(done=True)
    both = types.SimpleNamespace(result=1, done=True)
    assert "is not a tensor (types.SimpleNamespace)" in messages(half, "cpu")[0]
    assert "is not a tensor (types.SimpleNamespace)" in messages(other_half, "cpu")[0]
    assert "is a future (types.SimpleNamespace)" in messages(both, "cpu")[0]


def test_every_bad_item_of_a_tuple_is_named_by_its_position():
    got = messages((torch.ones(2), None, torch.empty(1, device="meta")), "cpu")
    assert [m.split(" is ")[0] for m in got] == ["lazy or wrapped output: output 1",
                                                 "lazy or wrapped output: output 2"]
