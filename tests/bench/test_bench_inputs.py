"""Inputs: the seeded generators, the value distributions, scalars and stored tensors."""

from __future__ import annotations

import math

import pytest
import torch

from solforge.bench.inputs import DISTRIBUTIONS, generate, make_inputs, random_tensor
from solforge.spec import Definition, SpecError, Workload


def draw(name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.int64, seed: int = 0, **args) -> torch.Tensor:
    return generate(name, shape, dtype, args, torch.Generator().manual_seed(seed), "cpu")


def test_randint_and_uniform_stay_in_their_half_open_range():
    ints = draw("randint", (4000,), low=-3, high=5)
    assert ints.min().item() == -3 and ints.max().item() == 4  # 4000 draws hit both ends
    floats = draw("uniform", (4000,), torch.float32, low=2.0, high=2.5)
    assert floats.dtype == torch.float32 and (floats >= 2.0).all() and (floats < 2.5).all()


def test_normal_has_the_requested_moments():
    values = draw("normal", (100_000,), torch.float64, mean=3.0, std=0.5)
    assert abs(values.mean().item() - 3.0) < 0.01  # sd of the mean: 0.5 / sqrt(1e5) = 0.0016
    assert abs(values.std().item() - 0.5) < 0.01


def test_arange_runs_along_the_last_dim():
    values = draw("arange", (3, 5), torch.int32, start=2)
    assert values.dtype == torch.int32
    assert values.tolist() == [[2, 3, 4, 5, 6]] * 3


def test_permutation_rows_are_permutations():
    values = draw("permutation", (6, 10))
    assert torch.equal(values.sort(dim=-1).values, torch.arange(10).expand(6, 10))
    assert not torch.equal(values[0], values[1])  # 1 in 10! chance of a false failure


def test_unique_randint_rows_are_distinct_and_in_range():
    values = draw("unique_randint", (50, 8), high=20)
    assert ((values >= 0) & (values < 20)).all()
    assert all(len(set(row.tolist())) == 8 for row in values)
    with pytest.raises(SpecError, match="need high >= 8"):
        draw("unique_randint", (2, 8), high=5)


def test_sorted_lengths_is_1d_descending_in_range():
    values = draw("sorted_lengths", (64,), torch.int32, low=1, high=100)
    assert values.dtype == torch.int32 and ((values >= 1) & (values < 100)).all()
    assert (values[:-1] >= values[1:]).all()
    with pytest.raises(SpecError, match="1-D"):
        draw("sorted_lengths", (2, 3), low=1, high=4)


@pytest.mark.parametrize("name, args, message", [
    ("nope", {}, "unknown"),
    ("randint", {"low": 0}, "missing ['high']"),
    ("normal", {"sigma": 1}, "unknown ['sigma']"),
    ("randint", {"low": 3, "high": 3}, "needs low < high"),
])
def test_generator_errors_are_one_line(name, args, message):
    with pytest.raises(SpecError) as exc:
        generate(name, (4,), torch.int64, args, torch.Generator().manual_seed(0), "cpu")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_generators_are_seeded():
    assert torch.equal(draw("permutation", (4, 9), seed=1), draw("permutation", (4, 9), seed=1))
    assert not torch.equal(draw("permutation", (4, 9), seed=1), draw("permutation", (4, 9), seed=2))


# -- distributions ----------------------------------------------------------------------------


def rand(dtype: torch.dtype, distribution: str, shape=(256, 128), seed: int = 0) -> torch.Tensor:
    return random_tensor(shape, dtype, distribution, torch.Generator().manual_seed(seed), "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_distributions_scale_as_documented(dtype):
    std = {d: rand(dtype, d).float().std().item() for d in DISTRIBUTIONS}
    info = torch.finfo(dtype)
    large = min(1e3, info.max ** 0.25)
    tiny = max(1e-3, math.sqrt(info.tiny))
    assert std["normal"] == pytest.approx(1.0, rel=0.05)
    assert std["large"] == pytest.approx(large, rel=0.05)
    assert std["tiny"] == pytest.approx(tiny, rel=0.05)
    for d in DISTRIBUTIONS:
        assert torch.isfinite(rand(dtype, d)).all(), d
    # sums of squares over a row stay finite in the dtype itself
    big = rand(dtype, "large")
    assert torch.isfinite((big * big).sum(dim=-1)).all()


def test_mixed_rows_span_orders_of_magnitude():
    row_scale = rand(torch.float32, "mixed").abs().amax(dim=-1)  # (256,)
    assert (row_scale.max() / row_scale.min()).item() > 1e3


def test_fp8_inputs_are_finite_after_the_cast():
    for d in DISTRIBUTIONS:
        values = rand(torch.float8_e4m3fn, d, shape=(64, 64))
        assert values.dtype == torch.float8_e4m3fn
        assert torch.isfinite(values.float()).all(), d


def test_unknown_distribution_is_an_error():
    with pytest.raises(SpecError, match="distribution 'huge'"):
        rand(torch.float32, "huge")


# -- make_inputs ------------------------------------------------------------------------------

DEFN = Definition.model_validate({
    "name": "inputs_test",
    "op_type": "test",
    "axes": {"B": {"type": "var"}, "P": {"type": "const", "value": 6}, "N": {"type": "expr", "expression": "B * P"}},
    "inputs": {
        "x": {"shape": ["B", "P"], "dtype": "bfloat16"},
        "table": {"shape": ["B", "P"], "dtype": "int32"},
        "scale": {"shape": None, "dtype": "float32"},
        "w": {"shape": ["P"], "dtype": "float32"},
    },
    "outputs": {"y": {"shape": ["B", "P"], "dtype": "bfloat16"}},
    "reference": "def run(x, table, scale, w):\n    return x\n",
    "solforge": {"input_generators": {"table": {"generator": "unique_randint", "args": {"high": "N"}}}},
})


def workload(**inputs) -> Workload:
    return Workload.model_validate({"uuid": "w", "axes": {"B": 3}, "inputs": {"scale": {"type": "scalar", "value": 0.5},
                                                                            **inputs}})


def test_make_inputs_uses_generators_scalars_and_distributions():
    wl = workload()
    axes = DEFN.resolve_axes(wl.axes)
    inputs = make_inputs(DEFN, wl, axes, seed=7, distribution="large", device="cpu", dataset_root=None)
    assert inputs["x"].shape == (3, 6) and inputs["x"].dtype == torch.bfloat16
    assert inputs["x"].float().abs().max().item() > 100  # 'large' bfloat16 scale is 1000
    table = inputs["table"]
    assert table.dtype == torch.int32 and ((table >= 0) & (table < 18)).all()  # high = N = B * P = 18
    assert inputs["scale"] == 0.5
    again = make_inputs(DEFN, wl, axes, seed=7, distribution="large", device="cpu", dataset_root=None)
    assert torch.equal(again["x"], inputs["x"]) and again["x"].data_ptr() != inputs["x"].data_ptr()
    other = make_inputs(DEFN, wl, axes, seed=8, distribution="large", device="cpu", dataset_root=None)
    assert not torch.equal(other["x"], inputs["x"])


def test_make_inputs_loads_safetensors(tmp_path):
    from safetensors.torch import save_file

    w = torch.arange(6, dtype=torch.float32)
    save_file({"norm.weight": w, "bad": torch.zeros(5)}, str(tmp_path / "w.safetensors"))
    axes = DEFN.resolve_axes({"B": 3})
    loaded = make_inputs(DEFN, workload(w={"type": "safetensors", "path": "w.safetensors", "tensor_key": "norm.weight"}),
                         axes, 0, "normal", "cpu", tmp_path)
    assert torch.equal(loaded["w"], w)
    with pytest.raises(SpecError, match="tensor_key: 'missing'"):
        make_inputs(DEFN, workload(w={"type": "safetensors", "path": "w.safetensors", "tensor_key": "missing"}),
                    axes, 0, "normal", "cpu", tmp_path)
    with pytest.raises(SpecError, match=r"the definition expects \(6,\)"):
        make_inputs(DEFN, workload(w={"type": "safetensors", "path": "w.safetensors", "tensor_key": "bad"}),
                    axes, 0, "normal", "cpu", tmp_path)
    with pytest.raises(SpecError, match="needs a dataset root"):
        make_inputs(DEFN, workload(w={"type": "safetensors", "path": "w.safetensors", "tensor_key": "bad"}),
                    axes, 0, "normal", "cpu", None)


def test_generator_arg_naming_an_unknown_axis_is_a_one_line_error():
    bad = DEFN.model_copy(deep=True)
    bad.solforge.input_generators["table"].args["high"] = "B * Q"
    with pytest.raises(SpecError, match="input_generators.table.args.high: unknown axis 'Q'"):
        make_inputs(bad, workload(), DEFN.resolve_axes({"B": 3}), 0, "normal", "cpu", None)
