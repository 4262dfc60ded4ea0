"""The built-in definitions and workloads: they load and check, their workload sets have
the promised shape, their references run (CPU smoke sizes for real, every real size on
meta tensors), compute the right thing in float64, stay bounded in memory, call no
library shortcut, and their tolerances accept honest low-precision kernels while
rejecting wrong ones."""

from __future__ import annotations

import math

import pytest
import torch
from problems_support import (
    as_tuple,
    attention_case,
    count,
    flash_attention,
    make_inputs,
    meta_inputs,
    naive_attention,
    passes,
    peak_gib,
    real_cases,
    reference,
    resolve_torch_name,
    smoke,
    smoke_cases,
    workload,
)

from solforge.problems import builtin_names, builtin_root, load_builtin, select_workloads
from solforge.spec import check_definition, load_dataset

EXPECTED = {
    "rmsnorm_h4096", "fused_add_rmsnorm_h4096", "softmax_v128256", "silu_and_mul_i14336",
    "rope_neox_h32_kv8_d128", "gemm_bf16_llama31_8b", "gqa_prefill_causal_h32_kv8_d128",
    "gqa_decode_h32_kv8_d128",
}
NAMES = sorted(EXPECTED)


# -- the data ---------------------------------------------------------------------------


def test_every_definition_loads_through_load_dataset_and_checks_clean():
    ds = load_dataset(builtin_root())
    assert EXPECTED <= set(ds.definitions)
    assert set(builtin_names()) == set(ds.definitions)
    for name, defn in ds.definitions.items():
        assert check_definition(defn) == [], name
        assert ds.workloads.get(name), f"{name} has no workloads"


@pytest.mark.parametrize("name", NAMES)
def test_workload_sets(name):
    defn, workloads = load_builtin(name)
    real = [w for w in workloads if not w.smoke]
    held = [w for w in real if w.held_out]
    smoke = [w for w in workloads if w.smoke]
    assert len(real) >= 6
    assert len(held) >= 2
    assert len(real) - len(held) >= 4, "the search needs workloads of its own"
    assert 2 <= len(smoke) <= 3
    assert not any(w.held_out for w in smoke)
    assert all(w.solforge.label for w in workloads)
    assert len({w.label for w in workloads}) == len(workloads)
    for w in workloads:
        assert w.uuid.startswith(f"{name}-")
        assert set(w.inputs) == set(defn.inputs), w.uuid


@pytest.mark.parametrize("name", NAMES)
def test_smoke_workloads_keep_the_const_axes_and_shrink_the_var_ones(name):
    defn, workloads = load_builtin(name)
    real = select_workloads(workloads, "all")
    for w in select_workloads(workloads, "smoke"):
        for axis, value in w.axes.items():
            assert value <= max(r.axes[axis] for r in real), (w.uuid, axis)
        elements = sum(math.prod(defn.shape_of(s, defn.resolve_axes(w.axes))) for s in defn.inputs.values())
        # float64 inputs under ~40 MB: the reference runs well under a second on a 2-core CPU
        assert elements <= 5_000_000, w.uuid


def test_workload_uuids_are_unique_across_the_set():
    uuids = [w.uuid for name in builtin_names() for w in load_builtin(name)[1]]
    assert len(uuids) == len(set(uuids))


@pytest.mark.parametrize("name", NAMES)
def test_tags_descriptions_and_generators(name):
    defn, _ = load_builtin(name)
    assert "model:llama-3.1-8b" in defn.tags
    assert any(t.startswith("stage:") for t in defn.tags)
    assert "Llama-3.1-8B/blob/main/config.json" in defn.description  # the cited config
    assert "Tolerance" in defn.description  # every definition justifies its tolerance
    from solforge.bench.inputs import GENERATORS

    for gen in defn.solforge.input_generators.values():
        assert gen.generator in GENERATORS


def test_attention_stage_tags():
    assert "stage:prefill" in load_builtin("gqa_prefill_causal_h32_kv8_d128")[0].tags
    assert "stage:decode" in load_builtin("gqa_decode_h32_kv8_d128")[0].tags
    assert "stage:decode" not in load_builtin("gqa_prefill_causal_h32_kv8_d128")[0].tags


def test_llama_31_8b_shapes():
    """The const axes are the published config's (hidden 4096, intermediate 14336, 32 heads,
    8 KV heads, head_dim 128, vocab 128256) and the GEMM workloads are its projections."""
    axes = {name: load_builtin(name)[0].axes for name in NAMES}
    assert axes["rmsnorm_h4096"]["hidden_size"].value == 4096
    assert axes["silu_and_mul_i14336"]["intermediate_size"].value == 14336
    assert axes["softmax_v128256"]["vocab_size"].value == 128256
    for name in ("rope_neox_h32_kv8_d128", "gqa_prefill_causal_h32_kv8_d128", "gqa_decode_h32_kv8_d128"):
        assert (axes[name]["num_qo_heads"].value, axes[name]["num_kv_heads"].value, axes[name]["head_dim"].value) == (
            32, 8, 128)
    gemm = select_workloads(load_builtin("gemm_bf16_llama31_8b")[1], "all")
    assert {(w.axes["N"], w.axes["K"]) for w in gemm} == {(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)}


# -- forbidden calls ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forbidden_torch_names_exist(name):
    """A misspelled dotted name would never match a call: every torch one must resolve."""
    import torch.nn.attention.flex_attention  # noqa: F401  (a submodule torch does not import itself)

    defn, _ = load_builtin(name)
    assert defn.solforge.forbidden_calls
    for dotted in defn.solforge.forbidden_calls:
        if dotted.startswith("torch."):
            resolve_torch_name(dotted)


@pytest.mark.parametrize("name", NAMES)
def test_references_write_the_math_rather_than_call_the_forbidden_shortcut(name):
    """The harness's static guard, run on the reference as the eager baseline's source."""
    from solforge.bench.build import eager_solution
    from solforge.bench.guards.static import static_findings

    defn, _ = load_builtin(name)
    messages = [f.message for f in static_findings(eager_solution(defn), defn)]
    if name == "gemm_bf16_llama31_8b":
        # The GEMM's specification is a matmul, and a solution calling it is the cuBLAS baseline.
        assert messages == ["forbidden call torch.matmul at reference.py:6"]
    else:
        assert messages == []


# -- references: smoke sizes on the CPU, every real size on meta ----------------------------


@pytest.mark.parametrize(("name", "uuid"), smoke_cases(NAMES))
@pytest.mark.parametrize("upcast", [False, True], ids=["bf16", "float64"])
def test_reference_runs_on_smoke_workloads(name, uuid, upcast):
    defn, wl = workload(name, uuid)
    axes = defn.resolve_axes(wl.axes)
    outs = as_tuple(reference(defn)(**make_inputs(defn, wl, upcast=upcast)))
    assert len(outs) == len(defn.outputs)
    for out, (oname, spec) in zip(outs, defn.outputs.items()):
        assert tuple(out.shape) == defn.shape_of(spec, axes), oname
        expected = torch.float64 if upcast and spec.dtype.is_floating else spec.dtype.to_torch()
        assert out.dtype == expected, oname
        assert torch.isfinite(out).all(), oname


@pytest.mark.parametrize(("name", "uuid"), real_cases(NAMES))
def test_reference_runs_on_meta_at_every_real_size(name, uuid):
    """No data-dependent shapes or .item(): what roofline's counting needs."""
    defn, wl = workload(name, uuid)
    axes = defn.resolve_axes(wl.axes)
    outs = as_tuple(reference(defn)(**meta_inputs(defn, wl)))
    for out, spec in zip(outs, defn.outputs.values()):
        assert out.device.type == "meta"
        assert tuple(out.shape) == defn.shape_of(spec, axes)
        assert out.dtype == spec.dtype.to_torch()


def test_references_fit_a_gpu_at_every_real_size_even_in_float64():
    worst = max((peak_gib(*workload(n, u)), u) for n, u in real_cases(NAMES))
    assert worst[0] < 40, worst  # of 80 GB, leaving the harness and the solution room


def test_the_peak_estimate_would_catch_a_reference_that_materializes_all_scores():
    defn, wl = workload("gqa_prefill_causal_h32_kv8_d128", "gqa_prefill_causal_h32_kv8_d128-b1-s16384")
    assert peak_gib(defn, wl) < 8
    assert peak_gib(defn, wl, Q_BLOCK=16384) > 64  # (1, 32, 16384, 16384) float64 scores


# -- references against independent float64 computations -----------------------------------


def test_rmsnorm_matches_a_float64_hand_computation():
    defn, smoke_set = smoke("rmsnorm_h4096")
    run = reference(defn)
    for wl in smoke_set:
        inputs = make_inputs(defn, wl)
        x, w = inputs["hidden_states"].double(), inputs["weight"].double()
        hand = x / (x.pow(2).mean(dim=-1, keepdim=True) + 1e-5).sqrt() * w
        torch.testing.assert_close(run(hidden_states=x, weight=w), hand, rtol=1e-12, atol=1e-12)
        # in bfloat16: the hand result rounded once (half an ulp, 2^-9), plus float32 noise
        torch.testing.assert_close(run(**inputs).double(), hand, rtol=2**-8, atol=1e-6)


def test_fused_add_rmsnorm_matches_a_float64_hand_computation():
    defn, smoke_set = smoke("fused_add_rmsnorm_h4096")
    run = reference(defn)
    for wl in smoke_set:
        inputs = make_inputs(defn, wl, upcast=True)
        s = inputs["hidden_states"] + inputs["residual"]
        hand = s / (s.pow(2).mean(dim=-1, keepdim=True) + 1e-5).sqrt() * inputs["weight"]
        output, residual_out = run(**inputs)
        torch.testing.assert_close(output, hand, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(residual_out, s, rtol=0, atol=0)


def test_softmax_silu_and_gemm_match_torch_in_float64():
    defn, smoke_set = smoke("softmax_v128256")
    for wl in smoke_set:
        x = make_inputs(defn, wl, upcast=True)["logits"]
        torch.testing.assert_close(reference(defn)(logits=x), torch.softmax(x, dim=-1), rtol=1e-12, atol=1e-15)
    defn, smoke_set = smoke("silu_and_mul_i14336")
    for wl in smoke_set:
        x = make_inputs(defn, wl, upcast=True)["gate_up"]
        gate, up = x.chunk(2, dim=-1)
        expected = torch.nn.functional.silu(gate) * up
        torch.testing.assert_close(reference(defn)(gate_up=x), expected, rtol=1e-12, atol=1e-12)
    defn, smoke_set = smoke("gemm_bf16_llama31_8b")
    for wl in smoke_set:
        inputs = make_inputs(defn, wl)
        a, b = inputs["A"].double(), inputs["B"].double()
        torch.testing.assert_close(reference(defn)(A=a, B=b), a @ b.T, rtol=1e-12, atol=1e-10)
        # bfloat16 operands, float32 accumulation, one rounding of the result
        torch.testing.assert_close(reference(defn)(**inputs).double(), a @ b.T, rtol=2**-7, atol=1e-2)


def test_rope_matches_a_complex_rotation_with_llama_frequencies():
    defn, smoke_set = smoke("rope_neox_h32_kv8_d128")
    for wl in smoke_set:
        inputs = make_inputs(defn, wl, upcast=True)
        max_position, dim = inputs["cos_sin_cache"].shape
        theta = 500000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (D/2,)
        angle = torch.arange(max_position, dtype=torch.float64)[:, None] * theta  # (P, D/2)
        cache = torch.cat([angle.cos(), angle.sin()], dim=-1)
        q_out, k_out = reference(defn)(**{**inputs, "cos_sin_cache": cache})
        rotation = torch.polar(torch.ones_like(angle), angle)[inputs["positions"]][:, None, :]  # (T, 1, D/2)
        for x, out in ((inputs["query"], q_out), (inputs["key"], k_out)):
            z = torch.complex(x[..., : dim // 2], x[..., dim // 2:]) * rotation  # NeoX pairs (i, i + D/2)
            torch.testing.assert_close(out, torch.cat([z.real, z.imag], dim=-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("q_block", [None, 16])
def test_blocked_causal_prefill_matches_naive_attention(q_block):
    """Q_BLOCK 16 walks several blocks and a ragged tail on every smoke shape."""
    defn, smoke_set = smoke("gqa_prefill_causal_h32_kv8_d128")
    run = reference(defn) if q_block is None else reference(defn, Q_BLOCK=q_block)
    for wl in smoke_set:
        inputs = make_inputs(defn, wl, upcast=True)
        expected = naive_attention(inputs["q"], inputs["k"], inputs["v"], causal=True)
        torch.testing.assert_close(run(**inputs), expected, rtol=1e-10, atol=1e-12)


def test_decode_matches_naive_attention():
    defn, smoke_set = smoke("gqa_decode_h32_kv8_d128")
    for wl in smoke_set:
        inputs = make_inputs(defn, wl, upcast=True)
        expected = naive_attention(inputs["q"][:, None], inputs["k_cache"], inputs["v_cache"], causal=False)[:, 0]
        torch.testing.assert_close(reference(defn)(**inputs), expected, rtol=1e-10, atol=1e-12)


# -- tolerances: honest low precision passes, wrong answers fail ------------------------------


def _flash(name: str, q, k, v, causal: bool = True) -> torch.Tensor:
    if "prefill" in name:
        return flash_attention(q, k, v, causal)
    return flash_attention(q[:, None], k, v, causal=False)[:, 0]  # one query row per sequence


ATTENTION = ["gqa_prefill_causal_h32_kv8_d128", "gqa_decode_h32_kv8_d128"]


@pytest.mark.parametrize("distribution", ["normal", "large", "tiny", "mixed"])
@pytest.mark.parametrize("name", ATTENTION)
def test_attention_tolerance_accepts_a_flash_style_kernel_on_every_distribution(name, distribution):
    for wl in smoke(name)[1][1:]:  # the two larger smoke shapes
        inputs, exact, tol = attention_case(name, wl, distribution)
        q, k, v = inputs.values()
        assert passes(_flash(name, q, k, v), exact, tol), wl.uuid


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_tolerance_rejects_wrong_outputs(name):
    for wl in smoke(name)[1][1:]:
        inputs, exact, tol = attention_case(name, wl, "normal")
        q, k, v = inputs.values()
        assert not passes(torch.zeros_like(exact), exact, tol), wl.uuid
        assert not passes(exact.double() * 1.05, exact, tol), wl.uuid
        if "prefill" in name:  # a kernel that forgets the causal mask
            assert not passes(_flash(name, q, k, v, causal=False), exact, tol), wl.uuid
        else:  # a kernel that reads only the first half of the cache
            half = k.shape[1] // 2
            assert not passes(_flash(name, q, k[:, :half], v[:, :half]), exact, tol), wl.uuid


def online_softmax(logits: torch.Tensor, chunks: int = 8) -> torch.Tensor:
    """Online softmax in float32 over `chunks` chunks: running max, rescaled running sum."""
    x = logits.float()
    run_max = torch.full((x.shape[0], 1), -math.inf)
    run_sum = torch.zeros(x.shape[0], 1)
    for chunk in x.chunk(chunks, dim=-1):
        new_max = torch.maximum(run_max, chunk.amax(dim=-1, keepdim=True))
        run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(chunk - new_max).sum(dim=-1, keepdim=True)
        run_max = new_max
    return torch.exp(x - run_max) / run_sum


@pytest.mark.parametrize("distribution", ["normal", "large", "tiny", "mixed"])
def test_softmax_tolerance_accepts_online_float32_on_every_distribution(distribution):
    defn, smoke_set = smoke("softmax_v128256")
    tol = defn.tolerance_for(defn.outputs["probs"].dtype)
    logits = make_inputs(defn, smoke_set[-1], distribution=distribution)["logits"]
    exact = reference(defn)(logits=logits.double()).float()
    assert passes(online_softmax(logits), exact, tol)
    assert passes(reference(defn)(logits=logits), exact, tol)


def test_softmax_tolerance_rejects_zeros_and_bfloat16_precision():
    defn, smoke_set = smoke("softmax_v128256")
    tol = defn.tolerance_for(defn.outputs["probs"].dtype)
    logits = make_inputs(defn, smoke_set[-1])["logits"]
    exact = reference(defn)(logits=logits.double()).float()
    online = online_softmax(logits)
    assert not passes(torch.zeros_like(online), exact, tol)  # passes the default atol 1e-4 almost everywhere
    assert not passes(online.bfloat16().float(), exact, tol)  # bfloat16 precision in a float32 output
    assert not passes(online * 1.01, exact, tol)


# -- work ----------------------------------------------------------------------------------


def test_causal_prefill_flops_count_only_the_causal_scores():
    B, S, Hq, Hkv, D = 2, 67, 32, 8, 128
    scores = int(torch.ones(S, S).tril().sum())  # query i sees keys 0..i
    work = count("gqa_prefill_causal_h32_kv8_d128", "gqa_prefill_causal_h32_kv8_d128-smoke-b2-s67")
    assert work.tensor_flops == {"bfloat16": B * Hq * scores * 2 * D * 2}  # QK^T and PV, 2 FLOPs per MAC
    assert work.other_flops == 0
    assert work.bytes_moved == 2 * (2 * B * S * Hq * D + 2 * B * S * Hkv * D)  # q, o; k, v


def test_gemm_counts_two_flops_per_mac_in_bfloat16():
    M, N, K = 128, 28672, 4096
    work = count("gemm_bf16_llama31_8b", "gemm_bf16_llama31_8b-gate_up-m128")
    assert work.tensor_flops == {"bfloat16": 2 * M * N * K}
    assert work.bytes_moved == 2 * (M * K + N * K + M * N)


def test_rope_bytes_leave_out_the_unread_cache():
    # q and k read and written in bfloat16, one int64 position; not the 64 MiB cache
    work = count("rope_neox_h32_kv8_d128", "rope_neox_h32_kv8_d128-t1-p131072")
    assert work.bytes_moved == 2 * 2 * (32 + 8) * 128 + 8
