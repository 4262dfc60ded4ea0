"""The seeded generators the built-in suite's structured inputs need (solforge.bench.inputs):
their values, their seeding, and their one-line errors."""

from __future__ import annotations

import math

import pytest
import torch

from solforge.bench.inputs import GENERATORS, generate
from solforge.spec import SpecError


def _draw(name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.int64, seed: int = 0, **args) -> torch.Tensor:
    return generate(name, shape, dtype, args, torch.Generator().manual_seed(seed), "cpu")


# -- suite part A: cross-entropy labels and sampling noise ------------------------------------


def test_labels_are_token_ids_with_a_fraction_ignored():
    labels = _draw("labels", (100_000,), high=128256, ignore_fraction=0.25)
    ignored = labels == -100
    assert ((labels >= 0) & (labels < 128256) | ignored).all()
    assert abs(ignored.double().mean().item() - 0.25) < 0.01  # binomial sd is 0.0014 at this n
    kept = labels[~ignored]
    assert kept.min() < 1000 and kept.max() > 127256  # spread over the whole vocabulary


def test_labels_defaults_and_extremes():
    assert GENERATORS["labels"] == (("high",), {"ignore_fraction": 0.0, "ignore_index": -100})
    assert (_draw("labels", (1000,), high=10) >= 0).all()
    assert (_draw("labels", (1000,), high=10, ignore_fraction=1.0) == -100).all()
    custom = _draw("labels", (1000,), high=10, ignore_fraction=0.5, ignore_index=-1)
    assert (custom == -1).any() and not (custom == -100).any()
    assert _draw("labels", (3, 4), torch.int32, high=10).dtype == torch.int32


def test_labels_are_seeded():
    assert torch.equal(_draw("labels", (64,), seed=3, high=50, ignore_fraction=0.3),
                       _draw("labels", (64,), seed=3, high=50, ignore_fraction=0.3))
    assert not torch.equal(_draw("labels", (64,), seed=3, high=50, ignore_fraction=0.3),
                           _draw("labels", (64,), seed=4, high=50, ignore_fraction=0.3))


@pytest.mark.parametrize(("args", "message"), [
    ({"high": 0}, "needs high > 0"),
    ({"high": 10, "ignore_fraction": 1.5}, "needs 0 <= ignore_fraction <= 1"),
    ({"ignore_fraction": 0.1}, "missing ['high']"),
    ({"high": 10, "fraction": 0.1}, "unknown ['fraction']"),
])
def test_labels_errors_are_one_line(args, message):
    with pytest.raises(SpecError) as exc:
        generate("labels", (4,), torch.int64, args, torch.Generator().manual_seed(0), "cpu")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_exponential_draws_follow_exp_rate():
    """Mean 1 / rate, variance 1 / rate^2, P(E > 1 / rate) = 1/e."""
    n = 200_000
    for rate in (1.0, 2.5):
        e = _draw("exponential", (n,), torch.float64, rate=rate)
        assert abs(e.mean().item() * rate - 1) < 0.01  # sd of the mean is 1 / sqrt(n) = 0.0022
        assert abs(e.var().item() * rate**2 - 1) < 0.03
        assert abs((e > 1 / rate).double().mean().item() - math.exp(-1)) < 0.005


def test_exponential_draws_are_strictly_positive_in_float32():
    """A sampler divides by them: no zero (nor infinity) even among 4M float32 draws."""
    e = _draw("exponential", (2048, 2048), torch.float32)
    assert e.dtype == torch.float32 and (e > 0).all() and torch.isfinite(e).all()
    assert e.max().item() <= 53 * math.log(2) + 1e-5  # U >= 2^-53


def test_exponential_is_seeded_and_checks_its_rate():
    assert GENERATORS["exponential"] == ((), {"rate": 1.0})
    assert torch.equal(_draw("exponential", (8, 5), torch.float32, seed=1),
                       _draw("exponential", (8, 5), torch.float32, seed=1))
    assert not torch.equal(_draw("exponential", (8, 5), torch.float32, seed=1),
                           _draw("exponential", (8, 5), torch.float32, seed=2))
    for rate in (0.0, -1.0):
        with pytest.raises(SpecError, match="needs rate > 0"):
            _draw("exponential", (4,), torch.float32, rate=rate)


def test_the_suite_definitions_get_their_structured_inputs_through_make_inputs():
    """Axis expressions resolve: labels stay below the definition's vocab_size."""
    from solforge.bench.inputs import make_inputs
    from solforge.problems import builtin_root, load_builtin, select_workloads

    defn, workloads = load_builtin("cross_entropy_v152064")
    wl = select_workloads(workloads, "smoke")[-1]
    inputs = make_inputs(defn, wl, defn.resolve_axes(wl.axes), 0, "normal", "cpu", builtin_root())
    labels = inputs["labels"]
    assert labels.dtype == torch.int64 and ((labels == -100) | ((labels >= 0) & (labels < 152064))).all()
    defn, workloads = load_builtin("top_k_top_p_sampling_v152064")
    wl = select_workloads(workloads, "smoke")[-1]
    inputs = make_inputs(defn, wl, defn.resolve_axes(wl.axes), 0, "normal", "cpu", builtin_root())
    assert inputs["exponentials"].dtype == torch.float32 and (inputs["exponentials"] > 0).all()
    assert ((inputs["top_k"] >= 1) & (inputs["top_k"] <= 100)).all()
    assert ((inputs["temperature"] >= 0.5) & (inputs["temperature"] < 1.0)).all()


# -- suite part B: paged KV caches and MoE groups ---------------------------------------------


def test_page_table_pages_are_distinct_across_the_whole_table():
    table = _draw("page_table", (64, 40), torch.int32, num_pages=64 * 40)
    assert table.dtype == torch.int32 and table.shape == (64, 40)
    assert torch.equal(table.reshape(-1).sort().values, torch.arange(64 * 40, dtype=torch.int32))  # all, once each
    assert not torch.equal(table.reshape(-1), torch.arange(64 * 40, dtype=torch.int32))  # scattered, not in order
    sparse = _draw("page_table", (8, 5), num_pages=1000)  # a pool larger than the table
    assert sparse.unique().numel() == 40 and sparse.min() >= 0 and sparse.max() < 1000


def test_page_table_is_seeded_and_checks_the_pool():
    assert GENERATORS["page_table"] == (("num_pages",), {})
    assert torch.equal(_draw("page_table", (4, 6), seed=5, num_pages=30),
                       _draw("page_table", (4, 6), seed=5, num_pages=30))
    assert not torch.equal(_draw("page_table", (4, 6), seed=5, num_pages=30),
                           _draw("page_table", (4, 6), seed=6, num_pages=30))
    with pytest.raises(SpecError, match="24 distinct pages need num_pages >= 24, got 23"):
        _draw("page_table", (4, 6), num_pages=23)


@pytest.mark.parametrize(("n", "low", "high"), [(1, 5, 5), (1, 3, 10), (7, 1, 300), (64, 256, 8192), (256, 17, 17)])
def test_mirrored_lengths_sum_to_the_formula(n, low, high):
    lengths = _draw("mirrored_lengths", (n,), torch.int32, seed=n, low=low, high=high)
    assert lengths.dtype == torch.int32 and lengths.shape == (n,)
    assert lengths.min() >= low and lengths.max() <= high
    assert torch.equal(lengths, lengths.sort(descending=True).values)
    assert int(lengths.sum()) == (n // 2) * (low + high) + (n % 2) * ((low + high) // 2)


def test_mirrored_lengths_spread_over_the_range_and_are_seeded():
    lengths = _draw("mirrored_lengths", (1000,), low=0, high=999)
    assert lengths.unique().numel() > 500 and lengths.max() > 950 and lengths.min() < 50
    assert torch.equal(_draw("mirrored_lengths", (9,), seed=1, low=2, high=50),
                       _draw("mirrored_lengths", (9,), seed=1, low=2, high=50))
    assert not torch.equal(_draw("mirrored_lengths", (9,), seed=1, low=2, high=50),
                           _draw("mirrored_lengths", (9,), seed=2, low=2, high=50))


@pytest.mark.parametrize(("shape", "args", "message"), [
    ((3, 2), {"low": 1, "high": 5}, "needs a 1-D tensor"),
    ((4,), {"low": 6, "high": 5}, "needs 0 <= low <= high, got low=6, high=5"),
    ((4,), {"low": -1, "high": 5}, "needs 0 <= low <= high"),
])
def test_mirrored_lengths_errors_are_one_line(shape, args, message):
    with pytest.raises(SpecError) as exc:
        _draw("mirrored_lengths", shape, **args)
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(("groups", "total"), [(8, 0), (8, 2), (8, 8), (8, 32768), (256, 8), (256, 2048), (1, 50)])
def test_group_offsets_fill_exactly_min_groups_total_groups(groups, total):
    offsets = _draw("group_offsets", (groups + 1,), torch.int32, seed=total, total=total)
    assert offsets.dtype == torch.int32 and offsets.shape == (groups + 1,)
    counts = offsets.diff()
    assert offsets[0] == 0 and offsets[-1] == total and (counts >= 0).all()
    assert int((counts > 0).sum()) == min(groups, total)


def test_group_offsets_spread_rows_uniformly_and_are_seeded():
    counts = _draw("group_offsets", (9,), total=80_000).diff().double()
    assert ((counts - 10_000).abs() < 500).all()  # binomial sd is about 94
    small = [set(_draw("group_offsets", (257,), seed=s, total=8).diff().nonzero().flatten().tolist()) for s in range(3)]
    assert small[0] != small[1] != small[2]  # which experts get the rows varies with the seed
    assert torch.equal(_draw("group_offsets", (9,), seed=4, total=100), _draw("group_offsets", (9,), seed=4, total=100))


@pytest.mark.parametrize(("shape", "total", "message"), [
    ((1,), 5, "needs a 1-D tensor of G + 1 >= 2 offsets"),
    ((3, 3), 5, "needs a 1-D tensor of G + 1 >= 2 offsets"),
    ((9,), -1, "needs total >= 0, got -1"),
])
def test_group_offsets_errors_are_one_line(shape, total, message):
    with pytest.raises(SpecError) as exc:
        _draw("group_offsets", shape, total=total)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_part_b_definitions_get_their_structured_inputs_through_make_inputs():
    """Axis expressions resolve: pages within the pool, lengths summing to total_kv_len,
    offsets ending at total_rows, distinct experts per token."""
    from solforge.bench.inputs import make_inputs
    from solforge.problems import builtin_root, load_builtin, select_workloads

    def inputs(name):
        defn, workloads = load_builtin(name)
        wl = select_workloads(workloads, "smoke")[-1]
        axes = defn.resolve_axes(wl.axes)
        return make_inputs(defn, wl, axes, 0, "large", "cpu", builtin_root()), axes

    paged, axes = inputs("gqa_decode_paged_h64_kv8_d128_ps16")
    assert paged["page_table"].dtype == torch.int32 and paged["page_table"].max() < axes["num_pages"]
    assert int(paged["kv_lens"].sum()) == axes["total_kv_len"]
    grouped, axes = inputs("grouped_gemm_bf16_mixtral_8x7b")
    assert grouped["expert_offsets"][-1] == axes["total_rows"]
    permute, axes = inputs("moe_permute_deepseek_v3")
    ids = permute["topk_ids"]
    assert ids.max() < 256 and all(len(set(row)) == 8 for row in ids.tolist())
