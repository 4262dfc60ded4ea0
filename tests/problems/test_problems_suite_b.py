"""The built-in suite, part B (GEMM, MoE, attention, conv, SSM): the definitions load and
check, their workload sets have the promised shape, their shapes are the published
configs', their references run (CPU smoke sizes for real, every real size on meta
tensors), match independent float64 computations, stay bounded in memory and call no
library shortcut, their SOL counts follow hand formulas, and their tolerances accept
honest low-precision kernels while rejecting wrong ones."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from problems_support import (
    as_tuple,
    attention_case,
    count,
    flash_attention,
    make_inputs,
    naive_attention,
    passes,
    real_cases,
    reference,
    resolve_torch_name,
    run_with_peak,
    smoke,
    smoke_cases,
    workload,
)
from problems_support import meta_inputs as declared_meta_inputs

from solforge.bench.inputs import generate
from solforge.problems import builtin_names, builtin_root, load_builtin, select_workloads
from solforge.spec import Definition, Workload, check_definition, check_workload, eval_axis_expr, load_dataset

# name -> family: one independent float64 check and one hand SOL formula per family
SUITE_B = {
    "gemm_bf16_llama31_70b": "gemm",
    "gemm_bf16_qwen25_72b": "gemm",
    "gemm_bf16_backward_llama31_70b": "gemm_backward",
    "gemm_fp8_e4m3_per_tensor_llama31_70b": "gemm_fp8",
    "gemm_fp8_e4m3_block128_deepseek_v3": "gemm_fp8",
    "grouped_gemm_bf16_mixtral_8x7b": "grouped_gemm",
    "grouped_gemm_fp8_block128_deepseek_v3": "grouped_gemm",
    "moe_batched_gemm_masked_bf16_mixtral_8x7b": "grouped_gemm",
    "moe_topk_softmax_mixtral_8x7b": "moe_routing",
    "moe_grouped_topk_deepseek_v3": "moe_routing",
    "moe_permute_mixtral_8x7b": "moe_permute",
    "moe_permute_deepseek_v3": "moe_permute",
    "moe_unpermute_mixtral_8x7b": "moe_unpermute",
    "moe_unpermute_shared_deepseek_v3": "moe_unpermute",
    "gqa_prefill_causal_h64_kv8_d128": "attention",
    "gqa_prefill_causal_h28_kv4_d128": "attention",
    "mha_prefill_causal_h12_d64": "attention",
    "mha_noncausal_h12_d64": "attention",
    "mha_noncausal_h20_d64": "attention",
    "mha_prefill_causal_backward_h12_d64": "attention_backward",
    "gqa_decode_paged_h64_kv8_d128_ps16": "paged_decode",
    "mla_decode_paged_h128_ckv512_kpe64_ps64": "paged_decode",
    "conv2d_3x3_sdxl_unet": "conv",
    "conv2d_3x3_backward_sdxl_unet": "conv_backward",
    "mamba2_ssd_chunk_scan_h80_p64_n128": "ssm",
    "mamba2_ssd_state_update_h80_p64_n128": "ssm",
}
NAMES = sorted(SUITE_B)
# References that read expert offsets on the host: their work is all formulas, and their
# real sizes run with the offsets on the CPU and everything else on meta.
DATA_DEPENDENT = {"grouped_gemm_bf16_mixtral_8x7b", "grouped_gemm_fp8_block128_deepseek_v3"}
# The GEMM family's specification is a matmul, the very call solutions may not make.
MATMUL_REFERENCES = {name for name, family in SUITE_B.items() if family.startswith(("gemm", "grouped_gemm"))}


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """These CPU tensors are small: a second intra-op thread gains nothing, and on a shared
    2-core box two spin-waiting OpenMP threads slow every op several times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generated(defn: Definition, wl: Workload, name: str, seed: int = 0) -> torch.Tensor:
    """One input from its custom generator, on the CPU (cheap for index inputs at real sizes)."""
    axes = defn.resolve_axes(wl.axes)
    gen = defn.solforge.input_generators[name]
    args = {k: eval_axis_expr(v, axes) if isinstance(v, str) else v for k, v in gen.args.items()}
    spec = defn.inputs[name]
    return generate(gen.generator, defn.shape_of(spec, axes), spec.dtype.to_torch(), args,
                    torch.Generator().manual_seed(seed), "cpu")


def meta_inputs(defn: Definition, wl: Workload, float_dtype: torch.dtype | None = None) -> dict:
    """Meta tensors of the workload's shapes (floats as `float_dtype` when given); the
    data-dependent references get their offsets from the generator, on the CPU."""
    out = declared_meta_inputs(defn, wl, float_dtype)
    if defn.name in DATA_DEPENDENT and "expert_offsets" in out:
        out["expert_offsets"] = generated(defn, wl, "expert_offsets")
    return out


# -- the data ---------------------------------------------------------------------------


def test_every_definition_loads_through_load_dataset_and_checks_clean():
    ds = load_dataset(builtin_root())
    assert set(SUITE_B) <= set(ds.definitions) == set(builtin_names())
    for name in NAMES:
        defn = ds.definitions[name]
        assert check_definition(defn) == [], name
        assert ds.workloads.get(name), name
        for wl in ds.workloads[name]:
            assert check_workload(defn, wl) == [], wl.uuid


def test_at_least_twenty_definitions_across_the_categories():
    ops = {load_builtin(n)[0].op_type for n in NAMES}
    assert len(NAMES) >= 20
    assert {"gemm", "gemm_fp8", "grouped_gemm", "moe", "attention", "mla", "conv", "ssm"} <= ops


@pytest.mark.parametrize("name", NAMES)
def test_workload_sets(name):
    defn, workloads = load_builtin(name)
    real = [w for w in workloads if not w.smoke]
    held = [w for w in real if w.held_out]
    smoke_wls = [w for w in workloads if w.smoke]
    assert len(real) >= 12
    assert len(held) >= 3
    assert len(real) - len(held) >= 9, "the search needs workloads of its own"
    assert 2 <= len(smoke_wls) <= 3
    assert not any(w.held_out for w in smoke_wls)
    assert all(w.solforge.label for w in workloads)
    assert len({w.label for w in workloads}) == len(workloads)
    assert len({tuple(sorted(w.axes.items())) for w in real}) == len(real), "two workloads of one shape"
    for w in workloads:
        assert w.uuid.startswith(f"{name}-smoke-" if w.smoke else f"{name}-"), w.uuid
        assert set(w.inputs) == set(defn.inputs), w.uuid


@pytest.mark.parametrize("name", NAMES)
def test_smoke_workloads_shrink_the_var_axes_to_cpu_sizes(name):
    defn, workloads = load_builtin(name)
    real = select_workloads(workloads, "all")
    for w in select_workloads(workloads, "smoke"):
        assert set(w.axes) == set(defn.var_axes())  # the const axes are the definition's own
        for axis, value in w.axes.items():
            assert value <= max(r.axes[axis] for r in real), (w.uuid, axis)
        axes = defn.resolve_axes(w.axes)
        elements = sum(math.prod(defn.shape_of(s, axes)) for s in defn.inputs.values())
        assert elements <= 5_000_000, w.uuid  # float64 inputs under 40 MB


def test_workload_uuids_are_unique_across_the_builtin_set():
    uuids = [w.uuid for name in builtin_names() for w in load_builtin(name)[1]]
    assert len(uuids) == len(set(uuids))


@pytest.mark.parametrize("name", NAMES)
def test_tags_description_tolerance_and_generators(name):
    from solforge.bench.inputs import GENERATORS

    defn, _ = load_builtin(name)
    assert any(t.startswith("model:") for t in defn.tags)
    assert "config.json (https://huggingface.co/" in defn.description  # the cited config
    assert "Tolerance" in defn.description
    for gen in defn.solforge.input_generators.values():
        assert gen.generator in GENERATORS
    for dtype in defn.solforge.tolerances:
        assert dtype in {s.dtype.canonical for s in defn.outputs.values()}, f"tolerance for no output: {dtype}"


def test_stage_tags():
    tags = {n: set(load_builtin(n)[0].tags) for n in NAMES}
    for name in ("gqa_prefill_causal_h64_kv8_d128", "gqa_prefill_causal_h28_kv4_d128", "mha_prefill_causal_h12_d64",
                 "mamba2_ssd_chunk_scan_h80_p64_n128"):
        assert "stage:prefill" in tags[name] and "stage:decode" not in tags[name], name
    for name in ("gqa_decode_paged_h64_kv8_d128_ps16", "mla_decode_paged_h128_ckv512_kpe64_ps64",
                 "mamba2_ssd_state_update_h80_p64_n128"):
        assert "stage:decode" in tags[name] and "stage:prefill" not in tags[name], name
    for name in ("gemm_bf16_llama31_70b", "grouped_gemm_bf16_mixtral_8x7b", "moe_grouped_topk_deepseek_v3"):
        assert {"stage:prefill", "stage:decode"} <= tags[name], name


BACKWARD = {
    "gemm_bf16_backward_llama31_70b": "gemm_bf16_llama31_70b",
    "mha_prefill_causal_backward_h12_d64": "mha_prefill_causal_h12_d64",
    "conv2d_3x3_backward_sdxl_unet": "conv2d_3x3_sdxl_unet",
}


@pytest.mark.parametrize("name", sorted(BACKWARD))
def test_backward_definitions_name_their_forward(name):
    defn, _ = load_builtin(name)
    forward, _ = load_builtin(BACKWARD[name])
    assert {"pass:backward", f"forward:{forward.name}", "stage:training"} <= set(defn.tags)
    assert not any(t.startswith("pass:") for t in forward.tags)
    for axis, spec in forward.axes.items():  # the same shapes, so workloads correspond
        assert defn.axes[axis].type == spec.type, axis


def test_published_config_shapes():
    """Const axes and GEMM projections are the configs' (Llama-3.1-70B, Qwen2.5-72B and 7B,
    Mixtral-8x7B, DeepSeek-V3, GPT-2, ViT-B/16, Whisper large-v3, mamba2-2.7b, SDXL)."""
    def consts(name):
        return {a: s.value for a, s in load_builtin(name)[0].axes.items() if s.type == "const"}

    def projections(name):
        return {(w.axes["N"], w.axes["K"]) for w in select_workloads(load_builtin(name)[1], "all")}

    llama70 = {(10240, 8192), (8192, 8192), (57344, 8192), (8192, 28672), (128256, 8192)}
    assert projections("gemm_bf16_llama31_70b") == llama70 == projections("gemm_bf16_backward_llama31_70b")
    assert projections("gemm_fp8_e4m3_per_tensor_llama31_70b") == llama70 - {(128256, 8192)}
    assert projections("gemm_bf16_qwen25_72b") == {(10240, 8192), (8192, 8192), (59136, 8192), (8192, 29568),
                                                   (152064, 8192)}
    assert projections("gemm_fp8_e4m3_block128_deepseek_v3") == {
        (1536, 7168), (576, 7168), (24576, 1536), (32768, 512), (7168, 16384), (36864, 7168), (7168, 18432),
        (4096, 7168), (7168, 2048)}
    assert projections("grouped_gemm_bf16_mixtral_8x7b") == {(28672, 4096), (4096, 14336)}
    assert projections("moe_batched_gemm_masked_bf16_mixtral_8x7b") == {(28672, 4096), (4096, 14336)}
    assert consts("moe_batched_gemm_masked_bf16_mixtral_8x7b")["num_experts"] == 8
    ds_experts = {(w.axes["num_experts"], w.axes["N"], w.axes["K"])
                  for w in select_workloads(load_builtin("grouped_gemm_fp8_block128_deepseek_v3")[1], "all")}
    assert ds_experts == {(256, 512, 7168), (256, 7168, 256), (32, 4096, 7168), (32, 7168, 2048), (9, 4096, 7168),
                          (9, 7168, 2048), (1, 4096, 7168)}
    assert consts("grouped_gemm_bf16_mixtral_8x7b")["num_experts"] == 8
    assert consts("moe_topk_softmax_mixtral_8x7b") == {"num_experts": 8, "top_k": 2}
    assert consts("moe_grouped_topk_deepseek_v3") == {"num_experts": 256, "top_k": 8}
    assert consts("moe_permute_mixtral_8x7b") == {"hidden_size": 4096, "num_experts": 8, "top_k": 2}
    assert consts("moe_permute_deepseek_v3") == {"hidden_size": 7168, "num_experts": 256, "top_k": 8}
    assert consts("moe_unpermute_mixtral_8x7b") == {"hidden_size": 4096, "top_k": 2}
    assert consts("moe_unpermute_shared_deepseek_v3") == {"hidden_size": 7168, "top_k": 8}
    heads = ("num_qo_heads", "num_kv_heads", "head_dim")
    assert tuple(consts("gqa_prefill_causal_h64_kv8_d128")[a] for a in heads) == (64, 8, 128)
    assert tuple(consts("gqa_decode_paged_h64_kv8_d128_ps16")[a] for a in heads) == (64, 8, 128)
    assert tuple(consts("gqa_prefill_causal_h28_kv4_d128")[a] for a in heads) == (28, 4, 128)
    assert tuple(consts("mha_prefill_causal_h12_d64")[a] for a in heads) == (12, 12, 64)
    assert consts("mha_prefill_causal_backward_h12_d64") == {"num_qo_heads": 12, "num_kv_heads": 12, "head_dim": 64}
    assert consts("mha_noncausal_h12_d64") == {"num_heads": 12, "head_dim": 64}
    assert consts("mha_noncausal_h20_d64") == {"num_heads": 20, "head_dim": 64}
    assert consts("gqa_decode_paged_h64_kv8_d128_ps16")["page_size"] == 16
    assert consts("mla_decode_paged_h128_ckv512_kpe64_ps64") == {
        "num_heads": 128, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "page_size": 64}
    ssm = {"num_heads": 80, "head_dim": 64, "n_groups": 1, "d_state": 128}  # 2 * 2560 / 64 heads
    assert consts("mamba2_ssd_chunk_scan_h80_p64_n128") == ssm == consts("mamba2_ssd_state_update_h80_p64_n128")
    assert "CHUNK = 256" in load_builtin("mamba2_ssd_chunk_scan_h80_p64_n128")[0].reference
    vit = {w.axes["seq_len"] for w in select_workloads(load_builtin("mha_noncausal_h12_d64")[1], "all")}
    assert vit == {(224 // 16) ** 2 + 1, (384 // 16) ** 2 + 1}
    whisper = select_workloads(load_builtin("mha_noncausal_h20_d64")[1], "all")
    assert {w.axes["kv_len"] for w in whisper} == {1500} and max(w.axes["q_len"] for w in whisper) == 1500
    gpt2 = select_workloads(load_builtin("mha_prefill_causal_h12_d64")[1], "all")
    assert max(w.axes["seq_len"] for w in gpt2) == 1024  # n_positions
    sdxl = {(w.axes["in_channels"], w.axes["out_channels"], w.axes["height"])
            for w in select_workloads(load_builtin("conv2d_3x3_sdxl_unet")[1], "all")}
    assert {(320, 320, 128), (640, 640, 64), (1280, 1280, 32), (2560, 1280, 32), (4, 320, 128)} <= sdxl


def test_prefill_and_decode_ranges():
    """Decode batches from 1 to 256; prefills from 512 to 32k tokens where the model allows."""
    def values(name, key):
        return [key(w.axes) for w in select_workloads(load_builtin(name)[1], "all")]

    for name in ("gqa_prefill_causal_h64_kv8_d128", "gqa_prefill_causal_h28_kv4_d128",
                 "mamba2_ssd_chunk_scan_h80_p64_n128"):
        tokens = values(name, lambda a: a["batch_size"] * a["seq_len"])
        assert min(tokens) == 512 and max(values(name, lambda a: a["seq_len"])) == 32768, name
    for name in ("gqa_decode_paged_h64_kv8_d128_ps16", "mla_decode_paged_h128_ckv512_kpe64_ps64",
                 "mamba2_ssd_state_update_h80_p64_n128"):
        batches = values(name, lambda a: a["batch_size"])
        assert min(batches) == 1 and max(batches) == 256, name
    for name in ("moe_topk_softmax_mixtral_8x7b", "moe_permute_deepseek_v3", "moe_unpermute_mixtral_8x7b"):
        tokens = values(name, lambda a: a["num_tokens"])
        assert {1, 256, 512, 32768} <= set(tokens), name


# -- forbidden calls ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forbidden_torch_names_exist(name):
    import torch.nn.attention.flex_attention  # noqa: F401  (a submodule torch does not import itself)

    defn, _ = load_builtin(name)
    assert defn.solforge.forbidden_calls
    for dotted in defn.solforge.forbidden_calls:
        if dotted.startswith("torch."):
            resolve_torch_name(dotted)


def test_the_library_fast_paths_are_forbidden():
    forbidden = {n: set(load_builtin(n)[0].solforge.forbidden_calls) for n in NAMES}
    for name in ("gemm_fp8_e4m3_per_tensor_llama31_70b", "gemm_fp8_e4m3_block128_deepseek_v3"):
        assert {"torch._scaled_mm", "torch.matmul", "torch.nn.functional.linear"} <= forbidden[name]
    for name in ("grouped_gemm_bf16_mixtral_8x7b", "grouped_gemm_fp8_block128_deepseek_v3",
                 "moe_batched_gemm_masked_bf16_mixtral_8x7b"):
        assert {"torch._grouped_mm", "torch._scaled_grouped_mm", "torch.matmul"} <= forbidden[name]
    for name, family in SUITE_B.items():
        if family.startswith(("attention", "paged")):
            assert "torch.nn.functional.scaled_dot_product_attention" in forbidden[name], name
    assert {"torch.nn.functional.conv2d", "torch.ops.aten.convolution"} <= forbidden["conv2d_3x3_sdxl_unet"]
    assert "torch.ops.aten.convolution_backward" in forbidden["conv2d_3x3_backward_sdxl_unet"]
    assert {"torch.topk", "torch.Tensor.topk", "torch.softmax"} <= forbidden["moe_topk_softmax_mixtral_8x7b"]
    assert {"torch.argsort", "torch.bincount"} <= forbidden["moe_permute_deepseek_v3"]
    assert "torch.Tensor.index_add_" in forbidden["moe_unpermute_shared_deepseek_v3"]


@pytest.mark.parametrize("name", NAMES)
def test_references_write_the_op_rather_than_call_a_forbidden_shortcut(name):
    """The harness's static guard, run on the reference as the eager baseline's source."""
    from solforge.bench.build import eager_solution
    from solforge.bench.guards.static import static_findings

    defn, _ = load_builtin(name)
    messages = [f.message for f in static_findings(eager_solution(defn), defn)]
    if name in MATMUL_REFERENCES:
        # The GEMM family's specification is a matmul; a solution calling it is the cuBLAS baseline.
        assert messages and all(m.startswith("forbidden call torch.matmul at reference.py:") for m in messages)
    else:
        assert messages == []


# -- references: smoke sizes on the CPU, every real size on meta ----------------------------


@pytest.mark.parametrize(("name", "uuid"), smoke_cases(NAMES))
@pytest.mark.parametrize("upcast", [False, True], ids=["native", "float64"])
def test_reference_runs_on_smoke_workloads(name, uuid, upcast):
    defn, wl = workload(name, uuid)
    axes = defn.resolve_axes(wl.axes)
    outs = as_tuple(reference(defn)(**make_inputs(defn, wl, upcast=upcast)))
    assert len(outs) == len(defn.outputs)
    for out, (oname, spec) in zip(outs, defn.outputs.items()):
        assert tuple(out.shape) == defn.shape_of(spec, axes), oname
        expected = torch.float64 if upcast and spec.dtype.is_floating else spec.dtype.to_torch()
        assert out.dtype == expected, oname
        assert torch.isfinite(out.double()).all(), oname


@pytest.mark.parametrize("name", sorted(DATA_DEPENDENT))
def test_data_dependent_references_give_every_count_as_a_formula(name):
    """count_work never runs them on meta: tensor FLOPs, other FLOPs and bytes are formulas,
    and the offsets they read are the one input that has to be real."""
    from solforge.roofline import count_work

    defn, workloads = load_builtin(name)
    work = defn.solforge.work
    assert "tensor_flops" in work.model_fields_set and work.other_flops is not None and work.bytes is not None
    with pytest.raises(NotImplementedError, match="meta tensor"):  # .tolist() of meta offsets
        reference(defn)(**{n: torch.empty(t.shape, dtype=t.dtype, device="meta")
                           for n, t in meta_inputs(defn, workloads[0]).items()})
    for wl in workloads:  # counted without running the reference: no error
        work = count_work(defn, wl)
        assert work.bytes_moved > 0 and sum(work.tensor_flops.values()) > 0


def peak_gib(defn: Definition, wl: Workload, **overrides) -> float:
    """float64 inputs (the harness's precise reference) plus the reference's peak, in GiB,
    counting meta tensors only (the grouped GEMMs' offsets are real CPU tensors)."""
    return run_with_peak(defn, meta_inputs(defn, wl, float_dtype=torch.float64), meta_only=True, **overrides)[1]


@pytest.mark.parametrize(("name", "uuid"), real_cases(NAMES))
def test_reference_runs_on_meta_and_fits_an_80gb_gpu_at_every_real_size(name, uuid):
    """No data-dependent shapes or .item() (what counting needs; the grouped GEMMs read their
    offsets on the host), and float64 inputs plus the reference's peak stay under 40 GB of
    the 80, leaving the harness's own copies and the solution room."""
    defn, wl = workload(name, uuid)
    axes = defn.resolve_axes(wl.axes)
    outs, gib = run_with_peak(defn, meta_inputs(defn, wl, float_dtype=torch.float64), meta_only=True)
    for out, spec in zip(outs, defn.outputs.values()):
        assert out.device.type == "meta"
        assert tuple(out.shape) == defn.shape_of(spec, axes)
        assert out.dtype == (torch.float64 if spec.dtype.is_floating else spec.dtype.to_torch())
    assert gib < 40


@pytest.mark.parametrize(("name", "uuid", "overrides", "unblocked_gib"), [
    ("gqa_prefill_causal_h64_kv8_d128", "gqa_prefill_causal_h64_kv8_d128-b1-s32768", {"Q_BLOCK": 32768}, 512),
    ("mha_prefill_causal_backward_h12_d64", "mha_prefill_causal_backward_h12_d64-b64-s1024", {"Q_BLOCK": 1024}, 30),
    ("gqa_decode_paged_h64_kv8_d128_ps16", "gqa_decode_paged_h64_kv8_d128_ps16-b256-l1024-3072",
     {"SEQ_BLOCK": 256}, 30),
    ("moe_unpermute_shared_deepseek_v3", "moe_unpermute_shared_deepseek_v3-t32768", {"TOKEN_BLOCK": 32768}, 40),
    ("mamba2_ssd_chunk_scan_h80_p64_n128", "mamba2_ssd_chunk_scan_h80_p64_n128-b1-s32768", {"CHUNK": 32768}, 512),
])
def test_the_peak_estimate_catches_the_unblocked_reference(name, uuid, overrides, unblocked_gib):
    """Each blocked loop keeps its reference small: one block of the whole (scores of all
    queries, every sequence's gathered pages, all tokens' rows, one 32k-token chunk) would not."""
    defn, wl = workload(name, uuid)
    blocked = peak_gib(defn, wl)
    assert blocked < 20
    assert peak_gib(defn, wl, **overrides) > max(unblocked_gib, 2 * blocked)


# -- references against independent float64 computations -----------------------------------


def test_gemms_match_float64_matmuls():
    for name in ("gemm_bf16_llama31_70b", "gemm_bf16_qwen25_72b"):
        defn, wls = smoke(name)
        for wl in wls:
            inputs = make_inputs(defn, wl)
            a, b = inputs["A"].double(), inputs["B"].double()
            torch.testing.assert_close(reference(defn)(A=a, B=b), a @ b.T, rtol=1e-12, atol=1e-10)
            torch.testing.assert_close(reference(defn)(**inputs).double(), a @ b.T, rtol=2**-7, atol=1e-2)


def test_gemm_backward_matches_autograd_of_the_forward():
    defn, wls = smoke("gemm_bf16_backward_llama31_70b")
    forward, _ = load_builtin("gemm_bf16_llama31_70b")
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        a = inputs["A"].clone().requires_grad_()
        b = inputs["B"].clone().requires_grad_()
        reference(forward)(A=a, B=b).backward(inputs["grad_C"])
        grad_a, grad_b = reference(defn)(**inputs)
        torch.testing.assert_close(grad_a, a.grad, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(grad_b, b.grad, rtol=1e-12, atol=1e-10)


def block_scaled_gemm(a, scale_a, b, scale_b, block=128):
    """float64 C = sum over K blocks of scale_a * scale_b * (A_block @ B_block^T), the
    promotion DeepGEMM performs, from the quantized values."""
    a, b = a.double(), b.double()
    n = b.shape[0]
    c = torch.zeros(a.shape[0], n, dtype=torch.float64)
    for kb in range(scale_a.shape[1]):
        cols = slice(kb * block, (kb + 1) * block)
        sb = scale_b[:, kb].double().repeat_interleave(block)[:n]  # (N,)
        c += scale_a[:, kb, None].double() * (a[:, cols] @ b[:, cols].T) * sb[None, :]
    return c


def test_fp8_gemms_match_scaled_float64_matmuls():
    defn, wls = smoke("gemm_fp8_e4m3_per_tensor_llama31_70b")
    for wl in wls:
        inputs = make_inputs(defn, wl)
        assert inputs["A"].dtype == torch.float8_e4m3fn and inputs["scale_a"].shape == ()
        scale = inputs["scale_a"].double() * inputs["scale_b"].double()
        exact = (inputs["A"].double() @ inputs["B"].double().T) * scale
        up = {n: t.double() for n, t in inputs.items()}
        torch.testing.assert_close(reference(defn)(**up), exact, rtol=1e-12, atol=1e-12)
        out = reference(defn)(**inputs)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.double(), exact, rtol=2**-7, atol=1e-3)
    defn, wls = smoke("gemm_fp8_e4m3_block128_deepseek_v3")
    for wl in wls:
        inputs = make_inputs(defn, wl)
        exact = block_scaled_gemm(inputs["A"], inputs["scale_a"], inputs["B"], inputs["scale_b"])
        up = {n: t.double() for n, t in inputs.items()}
        torch.testing.assert_close(reference(defn)(**up), exact, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(reference(defn)(**inputs).double(), exact, rtol=2**-7, atol=1e-3)
    # the smoke shapes cover partial blocks along N (200, 96) and K (200)
    assert {(w.axes["N"] % 128 != 0, w.axes["K"] % 128 != 0) for w in wls} >= {(True, False), (True, True)}


def test_grouped_gemms_match_a_per_row_float64_computation():
    for name in sorted(DATA_DEPENDENT):
        defn, wls = smoke(name)
        for wl in wls:
            inputs = make_inputs(defn, wl)
            offsets = inputs["expert_offsets"].long()
            rows = inputs["A"].shape[0]
            expert_of_row = torch.searchsorted(offsets[1:], torch.arange(rows), right=True)  # (rows,)
            expected = torch.empty(rows, inputs["B"].shape[1], dtype=torch.float64)
            for r in range(rows):
                e = int(expert_of_row[r])
                if "fp8" in name:
                    expected[r] = block_scaled_gemm(inputs["A"][r:r + 1], inputs["scale_a"][r:r + 1],
                                                    inputs["B"][e], inputs["scale_b"][e])[0]
                else:
                    expected[r] = inputs["A"][r].double() @ inputs["B"][e].double().T
            up = {n: t.double() if t.is_floating_point() else t for n, t in inputs.items()}
            torch.testing.assert_close(reference(defn)(**up), expected, rtol=1e-12, atol=1e-10)
            torch.testing.assert_close(reference(defn)(**inputs).double(), expected, rtol=2**-7, atol=1e-2)


def test_batched_masked_gemm_matches_per_expert_matmuls_and_zero_padding():
    defn, wls = smoke("moe_batched_gemm_masked_bf16_mixtral_8x7b")
    for wl in wls:
        inputs = make_inputs(defn, wl)
        counts = inputs["rows_per_expert"].tolist()
        a, b = inputs["A"].double(), inputs["B"].double()
        expected = torch.zeros(a.shape[0], a.shape[1], b.shape[1], dtype=torch.float64)
        for e, rows in enumerate(counts):
            expected[e, :rows] = a[e, :rows] @ b[e].T
        up = {n: t.double() if t.is_floating_point() else t for n, t in inputs.items()}
        torch.testing.assert_close(reference(defn)(**up), expected, rtol=1e-12, atol=1e-10)
        out = reference(defn)(**inputs)
        torch.testing.assert_close(out.double(), expected, rtol=2**-7, atol=1e-2)
        assert all((out[e, rows:] == 0).all() for e, rows in enumerate(counts))


def test_mixtral_routing_matches_softmax_and_a_stable_sort():
    defn, wls = smoke("moe_topk_softmax_mixtral_8x7b")
    for wl in wls:
        logits = make_inputs(defn, wl)["router_logits"]
        probs = torch.softmax(logits.double(), dim=-1)
        ids = torch.sort(logits.double(), dim=-1, descending=True, stable=True).indices[:, :2]  # ties: lower index
        weights = probs.gather(-1, ids)
        weights = weights / weights.sum(-1, keepdim=True)
        got_w, got_ids = reference(defn)(router_logits=logits.double())
        assert torch.equal(got_ids, ids.int())
        torch.testing.assert_close(got_w, weights, rtol=1e-12, atol=1e-14)
        got_w32, got_ids32 = reference(defn)(router_logits=logits)
        assert torch.equal(got_ids32, ids.int()) and got_w32.dtype == torch.float32
    # ties go to the lower index, best first
    tied = torch.tensor([[0.0, 1.0, 1.0, -1.0, 1.0, 0.0, 0.0, 0.0]], dtype=torch.bfloat16)
    w, i = reference(defn)(router_logits=tied)
    assert i.tolist() == [[1, 2]] and torch.allclose(w, torch.tensor([[0.5, 0.5]]))


def deepseek_routing(logits, bias):
    """float64 DeepSeek-V3 noaux_tc routing written with torch.topk, as HF's DeepseekV3 does."""
    t, e = logits.shape
    scores = logits.double().sigmoid()
    choice = scores + bias.double()
    group_scores = choice.view(t, 8, e // 8).topk(2, dim=-1).values.sum(-1)  # (T, 8)
    groups = group_scores.topk(4, dim=-1).indices
    mask = torch.zeros(t, 8, dtype=torch.bool).scatter(1, groups, True).repeat_interleave(e // 8, dim=1)
    ids = choice.masked_fill(~mask, -math.inf).topk(8, dim=-1).indices
    weights = scores.gather(1, ids)
    return weights / weights.sum(-1, keepdim=True) * 2.5, ids


def test_deepseek_routing_matches_a_topk_implementation():
    defn, wls = smoke("moe_grouped_topk_deepseek_v3")
    for wl in wls:
        inputs = make_inputs(defn, wl)
        bias = inputs["e_score_correction_bias"]
        assert (bias.abs() <= 0.1).all()
        weights, ids = deepseek_routing(inputs["router_logits"], bias)
        got_w, got_ids = reference(defn)(**{n: t.double() for n, t in inputs.items()})
        assert torch.equal(got_ids, ids.int())
        torch.testing.assert_close(got_w, weights, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(got_w.sum(-1), torch.full((got_w.shape[0],), 2.5, dtype=torch.float64))
        assert all(len({i // 32 for i in row}) <= 4 for row in got_ids.tolist())  # at most 4 groups


def test_deepseek_routing_limits_each_token_to_four_groups():
    defn, _ = load_builtin("moe_grouped_topk_deepseek_v3")
    logits = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    logits[:, ::32] += 10.0  # one strong expert in every group: the best experts spread over all 8 groups
    _, ids = reference(defn)(router_logits=logits, e_score_correction_bias=torch.zeros(256))
    assert all(len({i // 32 for i in row}) <= 4 for row in ids.tolist())
    _, ids_topk = deepseek_routing(logits, torch.zeros(256))
    assert torch.equal(ids, ids_topk.int())


def test_permutations_match_a_stable_argsort():
    for name in ("moe_permute_mixtral_8x7b", "moe_permute_deepseek_v3"):
        defn, wls = smoke(name)
        experts = defn.axes["num_experts"].value
        for wl in wls:
            inputs = make_inputs(defn, wl)
            ids = inputs["topk_ids"]
            k = ids.shape[1]
            assert all(len(set(r)) == k for r in ids.tolist())  # distinct experts per token
            order = torch.argsort(ids.reshape(-1), stable=True)
            counts = torch.bincount(ids.reshape(-1), minlength=experts)
            offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
            permuted, got_offsets, source_row = reference(defn)(**inputs)
            assert torch.equal(source_row, order.int())
            assert torch.equal(got_offsets, offsets.int())
            assert torch.equal(permuted, inputs["hidden_states"][order // k])


def test_unpermute_inverts_the_permute_and_matches_an_index_add():
    defn, wls = smoke("moe_unpermute_mixtral_8x7b")
    permute, _ = load_builtin("moe_permute_mixtral_8x7b")
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        t, k = inputs["topk_weights"].shape
        expected = torch.zeros(t, inputs["expert_output"].shape[1], dtype=torch.float64)
        flat_weights = inputs["topk_weights"].reshape(-1)[inputs["source_row"].long()]  # in expert order
        expected.index_add_(0, inputs["source_row"].long() // k, inputs["expert_output"] * flat_weights[:, None])
        torch.testing.assert_close(reference(defn)(**inputs), expected, rtol=1e-12, atol=1e-12)
        # permute then unpermute with weights 1/k gives the hidden states back
        gen = torch.Generator().manual_seed(t)
        hidden = torch.randn(t, 4096, dtype=torch.float64, generator=gen)
        ids = torch.stack([torch.randperm(8, generator=gen)[:k] for _ in range(t)]).int()
        permuted, _, source_row = reference(permute)(hidden_states=hidden, topk_ids=ids)
        back = reference(defn)(expert_output=permuted, source_row=source_row,
                               topk_weights=torch.full((t, k), 1.0 / k, dtype=torch.float64))
        torch.testing.assert_close(back, hidden, rtol=1e-12, atol=1e-12)
    defn, wls = smoke("moe_unpermute_shared_deepseek_v3")
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        t, k = inputs["topk_weights"].shape
        expected = inputs["shared_output"].clone()
        flat_weights = inputs["topk_weights"].reshape(-1)[inputs["source_row"].long()]
        expected.index_add_(0, inputs["source_row"].long() // k, inputs["expert_output"] * flat_weights[:, None])
        torch.testing.assert_close(reference(defn)(**inputs), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(reference(defn, TOKEN_BLOCK=2)(**inputs), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("q_block", [None, 16])
@pytest.mark.parametrize("name", ["gqa_prefill_causal_h64_kv8_d128", "gqa_prefill_causal_h28_kv4_d128",
                                  "mha_prefill_causal_h12_d64", "mha_noncausal_h12_d64", "mha_noncausal_h20_d64"])
def test_attention_matches_naive_float64_attention(name, q_block):
    """Q_BLOCK 16 walks several blocks and a ragged tail; torch's SDPA agrees too."""
    defn, wls = smoke(name)
    run = reference(defn) if q_block is None else reference(defn, Q_BLOCK=q_block)
    causal = "noncausal" not in name
    for wl in wls:
        q, k, v = make_inputs(defn, wl, upcast=True).values()
        expected = naive_attention(q, k, v, causal)
        torch.testing.assert_close(run(q=q, k=k, v=v), expected, rtol=1e-10, atol=1e-12)
        sdpa = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              is_causal=causal, enable_gqa=True).transpose(1, 2)
        torch.testing.assert_close(expected, sdpa, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("q_block", [None, 16])
def test_attention_backward_matches_autograd(q_block):
    defn, wls = smoke("mha_prefill_causal_backward_h12_d64")
    run = reference(defn) if q_block is None else reference(defn, Q_BLOCK=q_block)
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        q, k, v = (inputs[n].clone().requires_grad_() for n in ("q", "k", "v"))
        naive_attention(q, k, v, causal=True).backward(inputs["do"])
        dq, dk, dv = run(**inputs)
        for got, want in ((dq, q.grad), (dk, k.grad), (dv, v.grad)):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def gather_sequence(cache: torch.Tensor, pages: torch.Tensor, length: int) -> torch.Tensor:
    """Sequence's first `length` tokens from a paged pool: (length, ...)."""
    return cache[pages.long()].reshape(-1, *cache.shape[2:])[:length]


def test_paged_gqa_decode_matches_attention_over_each_sequences_pages():
    defn, wls = smoke("gqa_decode_paged_h64_kv8_d128_ps16")
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        out = reference(defn)(**inputs)
        for b, length in enumerate(inputs["kv_lens"].tolist()):
            k = gather_sequence(inputs["k_cache"], inputs["page_table"][b], length)
            v = gather_sequence(inputs["v_cache"], inputs["page_table"][b], length)
            expected = naive_attention(inputs["q"][b][None, None], k[None], v[None], causal=False)[0, 0]
            torch.testing.assert_close(out[b], expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(reference(defn, SEQ_BLOCK=1)(**inputs), out, rtol=1e-12, atol=1e-14)


def test_mla_absorbed_decode_equals_unabsorbed_multi_head_attention():
    """With W_UK folded into the query and W_UV applied after, the reference is DeepSeek-V3's
    MLA: per-head keys [c_KV W_UK^T, k_pe], values c_KV W_UV^T, scale 192^-0.5 * mscale^2."""
    defn, wls = smoke("mla_decode_paged_h128_ckv512_kpe64_ps64")
    mscale = 0.1 * math.log(40) + 1
    scale = 192 ** -0.5 * mscale ** 2
    assert abs(reference(defn).__globals__["SM_SCALE"] - scale) < 1e-15 and abs(scale - 0.13523) < 1e-4
    gen = torch.Generator().manual_seed(0)
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        heads = inputs["q_nope"].shape[1]
        w_uk = torch.randn(heads, 128, 512, generator=gen, dtype=torch.float64) / 512 ** 0.5  # (H, nope, R)
        w_uv = torch.randn(heads, 128, 512, generator=gen, dtype=torch.float64) / 512 ** 0.5  # (H, v, R)
        q_nope = torch.randn(inputs["q_nope"].shape[0], heads, 128, generator=gen, dtype=torch.float64)
        absorbed = torch.einsum("bhn,hnr->bhr", q_nope, w_uk)
        latent = reference(defn)(**{**inputs, "q_nope": absorbed})  # (B, H, R)
        out = torch.einsum("bhr,hvr->bhv", latent, w_uv)
        for b, length in enumerate(inputs["kv_lens"].tolist()):
            ckv = gather_sequence(inputs["ckv_cache"], inputs["page_table"][b], length)  # (L, R)
            kpe = gather_sequence(inputs["kpe_cache"], inputs["page_table"][b], length)  # (L, 64)
            k = torch.cat([torch.einsum("lr,hnr->lhn", ckv, w_uk), kpe[:, None].expand(-1, heads, -1)], dim=-1)
            v = torch.einsum("lr,hvr->lhv", ckv, w_uv)
            q = torch.cat([q_nope[b], inputs["q_pe"][b]], dim=-1)  # (H, 192)
            expected = naive_attention(q[None, None], k[None], v[None], causal=False, scale=scale)[0, 0]
            torch.testing.assert_close(out[b], expected, rtol=1e-9, atol=1e-12)


def test_conv2d_matches_torch_conv2d_in_float64():
    defn, wls = smoke("conv2d_3x3_sdxl_unet")
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        expected = F.conv2d(inputs["x"], inputs["weight"], inputs["bias"], padding=1)
        torch.testing.assert_close(reference(defn)(**inputs), expected, rtol=1e-12, atol=1e-10)


def test_conv2d_backward_matches_autograd_of_torch_conv2d():
    defn, wls = smoke("conv2d_3x3_backward_sdxl_unet")
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        x = inputs["x"].clone().requires_grad_()
        w = inputs["weight"].clone().requires_grad_()
        bias = torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True)
        F.conv2d(x, w, bias, padding=1).backward(inputs["grad_y"])
        grad_x, grad_w, grad_b = reference(defn)(**inputs)
        for got, want in ((grad_x, x.grad), (grad_w, w.grad), (grad_b, bias.grad)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)


def ssd_recurrence(x, dt, A, B, C, D, state=None):
    """Mamba-2's recurrence, one token at a time in float64: y (b, L, H, P), final state."""
    b, L, H, P = x.shape
    rep = H // B.shape[2]
    Bh, Ch = B.repeat_interleave(rep, dim=2), C.repeat_interleave(rep, dim=2)
    h = torch.zeros(b, H, P, B.shape[3], dtype=torch.float64) if state is None else state
    ys = []
    for t in range(L):
        written = (x[:, t] * dt[:, t, :, None])[..., None] * Bh[:, t, :, None, :]  # (b, H, P, N)
        h = h * torch.exp(dt[:, t] * A)[:, :, None, None] + written
        ys.append((h * Ch[:, t, :, None, :]).sum(-1) + D[:, None] * x[:, t])
    return torch.stack(ys, dim=1), h


def test_ssd_chunk_scan_matches_the_recurrence():
    """At the real chunk size (one partial chunk, or a full one and a partial one) and at 16,
    where every smoke shape spans several chunks."""
    defn, wls = smoke("mamba2_ssd_chunk_scan_h80_p64_n128")
    for wl in wls:
        inputs = make_inputs(defn, wl, upcast=True)
        assert (inputs["dt"] > 0).all() and (inputs["A"] < 0).all()
        y_expected, state_expected = ssd_recurrence(**inputs)
        for run in (reference(defn), reference(defn, CHUNK=16)):
            y, state = run(**inputs)
            torch.testing.assert_close(y, y_expected, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(state, state_expected, rtol=1e-10, atol=1e-12)


def test_ssd_state_update_continues_the_chunk_scan():
    """Decode steps from the prefill's final state give the recurrence's next outputs."""
    scan, wls = smoke("mamba2_ssd_chunk_scan_h80_p64_n128")
    update, _ = load_builtin("mamba2_ssd_state_update_h80_p64_n128")
    inputs = make_inputs(scan, wls[1], upcast=True)  # (2, 100)
    prompt = {n: t[:, :90] if t.dim() > 1 else t for n, t in inputs.items()}
    _, state = reference(scan)(**prompt)
    y_all, _ = ssd_recurrence(**inputs)
    for step in range(90, 100):
        y, state = reference(update)(state=state, x=inputs["x"][:, step], dt=inputs["dt"][:, step], A=inputs["A"],
                                     B=inputs["B"][:, step], C=inputs["C"][:, step], D=inputs["D"])
        torch.testing.assert_close(y, y_all[:, step], rtol=1e-10, atol=1e-12)


def test_ssd_state_update_matches_the_formula():
    defn, wls = smoke("mamba2_ssd_state_update_h80_p64_n128")
    for wl in wls:
        i = make_inputs(defn, wl, upcast=True)
        written = (i["x"] * i["dt"][..., None])[..., None] * i["B"][:, :, None, :]  # one group: B broadcasts
        state = i["state"] * torch.exp(i["dt"] * i["A"])[..., None, None] + written
        y = torch.einsum("bhpn,bgn->bhp", state, i["C"]) + i["D"][:, None] * i["x"]  # one group
        got_y, got_state = reference(defn)(**i)
        torch.testing.assert_close(got_state, state, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_y, y, rtol=1e-12, atol=1e-12)


# -- SOL counts against hand formulas -----------------------------------------------------------


def test_gemm_counts():
    M, N, K = 128, 57344, 8192
    work = count("gemm_bf16_llama31_70b", "gemm_bf16_llama31_70b-gate_up-m128")
    assert work.tensor_flops == {"bfloat16": 2 * M * N * K} and work.other_flops == 0
    assert work.bytes_moved == 2 * (M * K + N * K + M * N)
    M, N, K = 4096, 8192, 28672
    work = count("gemm_bf16_backward_llama31_70b", "gemm_bf16_backward_llama31_70b-down-m4096")
    assert work.tensor_flops == {"bfloat16": 2 * (2 * M * N * K)}  # dA and dB
    assert work.bytes_moved == 2 * (M * N + M * K + N * K) + 2 * (M * K + N * K)


def test_fp8_gemm_counts():
    M, N, K = 64, 10240, 8192
    work = count("gemm_fp8_e4m3_per_tensor_llama31_70b", "gemm_fp8_e4m3_per_tensor_llama31_70b-qkv-m64")
    assert work.tensor_flops == {"float8_e4m3fn": 2 * M * N * K} and work.other_flops == 0
    assert work.bytes_moved == M * K + N * K + 4 + 4 + 2 * M * N
    M, N, K = 8192, 576, 7168  # kv_a: N is 4.5 blocks of 128
    work = count("gemm_fp8_e4m3_block128_deepseek_v3", "gemm_fp8_e4m3_block128_deepseek_v3-kv_a-m8192")
    assert work.tensor_flops == {"float8_e4m3fn": 2 * M * N * K} and work.other_flops == 0
    assert work.bytes_moved == M * K + 4 * M * (K // 128) + N * K + 4 * 5 * (K // 128) + 2 * M * N


@pytest.mark.parametrize(("uuid", "busy"), [
    ("grouped_gemm_bf16_mixtral_8x7b-gate_up-r2", 2), ("grouped_gemm_bf16_mixtral_8x7b-down-r8192", 8)])
def test_grouped_gemm_counts_read_only_the_busy_experts(uuid, busy):
    defn, wl = workload("grouped_gemm_bf16_mixtral_8x7b", uuid)
    rows, N, K = wl.axes["total_rows"], wl.axes["N"], wl.axes["K"]
    work = count(defn.name, uuid)
    assert work.tensor_flops == {"bfloat16": 2 * rows * N * K} and work.other_flops == 0
    assert work.bytes_moved == 2 * rows * K + 2 * busy * N * K + 2 * rows * N + 4 * 9
    for seed in range(3):  # the generator guarantees the busy count the formula assumes
        offsets = generated(defn, wl, "expert_offsets", seed)
        assert int((offsets.diff() > 0).sum()) == busy and offsets[-1] == rows


def test_grouped_fp8_gemm_counts_and_every_real_workloads_offsets():
    defn, wl = workload("grouped_gemm_fp8_block128_deepseek_v3", "grouped_gemm_fp8_block128_deepseek_v3-tp8-gate_up-r8")
    rows, E, N, K = 8, 256, 512, 7168
    work = count(defn.name, wl.uuid)
    assert work.tensor_flops == {"float8_e4m3fn": 2 * rows * N * K} and work.other_flops == 0
    assert work.bytes_moved == rows * K + 4 * rows * 56 + 8 * (N * K + 4 * 4 * 56) + 2 * rows * N + 4 * (E + 1)
    for name in sorted(DATA_DEPENDENT):
        defn, workloads = load_builtin(name)
        for wl in workloads:
            axes = defn.resolve_axes(wl.axes)
            offsets = generated(defn, wl, "expert_offsets")
            assert offsets[0] == 0 and offsets[-1] == axes["total_rows"] and (offsets.diff() >= 0).all()
            assert int((offsets.diff() > 0).sum()) == min(axes["num_experts"], axes["total_rows"]), wl.uuid


def test_batched_masked_gemm_counts_only_valid_rows_of_busy_experts():
    defn, workloads = load_builtin("moe_batched_gemm_masked_bf16_mixtral_8x7b")
    for wl in workloads:  # every expert busy: its weight must be read, as the bytes formula says
        axes = defn.resolve_axes(wl.axes)
        counts = generated(defn, wl, "rows_per_expert")
        assert axes["min_rows"] >= 1 and int(counts.min()) >= 1, wl.uuid
        assert int(counts.sum()) == axes["valid_rows"] and int(counts.max()) <= axes["max_rows"]
    lo, hi, N, K, E = 32, 96, 28672, 4096, 8
    work = count(defn.name, "moe_batched_gemm_masked_bf16_mixtral_8x7b-gate_up-r32-96")
    rows = E // 2 * (lo + hi)  # 512: a decode batch of 256 tokens, two experts each
    assert rows == 512
    assert work.tensor_flops == {"bfloat16": 2 * rows * N * K} and work.other_flops == 0
    assert work.bytes_moved == 2 * rows * K + 2 * E * N * K + 2 * E * hi * N + 4 * E


def test_routing_and_permutation_counts():
    T = 4096
    work = count("moe_topk_softmax_mixtral_8x7b", "moe_topk_softmax_mixtral_8x7b-t4096")
    assert work.tensor_flops == {} and work.other_flops == T * 8 * 2
    assert work.bytes_moved == 2 * T * 8 + 4 * T * 2 + 4 * T * 2  # bf16 logits; f32 weights, i32 ids
    work = count("moe_grouped_topk_deepseek_v3", "moe_grouped_topk_deepseek_v3-t4096")
    assert work.other_flops == 6 * T * 256
    assert work.bytes_moved == 4 * T * 256 + 4 * 256 + 2 * 4 * T * 8
    H, E, k = 7168, 256, 8
    work = count("moe_permute_deepseek_v3", "moe_permute_deepseek_v3-t4096")
    assert work.tensor_flops == {} and work.other_flops == T * k
    assert work.bytes_moved == 2 * T * H + 4 * T * k + 2 * T * k * H + 4 * (E + 1) + 4 * T * k
    work = count("moe_unpermute_shared_deepseek_v3", "moe_unpermute_shared_deepseek_v3-t4096")
    assert work.other_flops == 2 * k * T * H  # k multiplies, k - 1 adds, the shared add
    assert work.bytes_moved == 2 * T * k * H + 4 * T * k + 4 * T * k + 2 * T * H + 2 * T * H
    work = count("moe_unpermute_mixtral_8x7b", "moe_unpermute_mixtral_8x7b-t4096")
    assert work.other_flops == 3 * T * 4096


def test_unpermute_formula_matches_what_the_reference_counts_less_one_add():
    """The formula is the reference's count minus the sum's first add per output."""
    from solforge.roofline import count_work

    defn, wl = workload("moe_unpermute_mixtral_8x7b", "moe_unpermute_mixtral_8x7b-t512")
    counted = count_work(defn.model_copy(update={"solforge": defn.solforge.model_copy(update={"work": None})}), wl)
    assert counted.other_flops == 2 * 2 * 512 * 4096
    assert count_work(defn, wl).other_flops == counted.other_flops - 512 * 4096


def test_attention_counts():
    B, S, H, Hkv, D = 1, 32768, 64, 8, 128
    work = count("gqa_prefill_causal_h64_kv8_d128", "gqa_prefill_causal_h64_kv8_d128-b1-s32768")
    scores = S * (S + 1) // 2  # query i sees keys 0..i
    assert work.tensor_flops == {"bfloat16": B * H * scores * 2 * D * 2} and work.other_flops == 0
    assert work.bytes_moved == 2 * (2 * B * S * H * D + 2 * B * S * Hkv * D)
    B, S, H, D = 12, 1024, 12, 64
    work = count("mha_prefill_causal_backward_h12_d64", "mha_prefill_causal_backward_h12_d64-b12-s1024")
    assert work.tensor_flops == {"bfloat16": 5 * B * H * (S * (S + 1) // 2) * 2 * D}  # 5 causal matmuls
    assert work.bytes_moved == 2 * 7 * B * S * H * D
    work = count("mha_noncausal_h20_d64", "mha_noncausal_h20_d64-b16-q1-kv1500")
    assert work.tensor_flops == {"bfloat16": 2 * (2 * 16 * 20 * 1 * 1500 * 64)}
    work = count("mha_noncausal_h12_d64", "mha_noncausal_h12_d64-b64-s197")
    assert work.tensor_flops == {"bfloat16": 4 * 64 * 12 * 197 * 197 * 64}


@pytest.mark.parametrize("name", ["gqa_decode_paged_h64_kv8_d128_ps16", "mla_decode_paged_h128_ckv512_kpe64_ps64"])
def test_paged_decode_counts_follow_the_generated_lengths(name):
    """Work formulas use total_kv_len; the generator's lengths sum to it on every workload,
    and its pages are distinct pages of the pool."""
    defn, workloads = load_builtin(name)
    for wl in workloads:
        axes = defn.resolve_axes(wl.axes)
        lengths = generated(defn, wl, "kv_lens")
        assert int(lengths.sum()) == axes["total_kv_len"], wl.uuid
        assert lengths.min() >= axes["min_kv_len"] and lengths.max() <= axes["max_kv_len"]
        pages = generated(defn, wl, "page_table")
        assert pages.unique().numel() == pages.numel() and 0 <= pages.min() and pages.max() < axes["num_pages"]
    wl = next(w for w in workloads if w.uuid.endswith("b64-l512-4096") or w.uuid.endswith("b64-l1024-4096"))
    B, lo, hi = wl.axes["batch_size"], wl.axes["min_kv_len"], wl.axes["max_kv_len"]
    total = B // 2 * (lo + hi)
    work = count(name, wl.uuid)
    if name.startswith("gqa"):
        assert work.tensor_flops == {"bfloat16": 2 * 2 * 64 * 128 * total}
        assert work.bytes_moved == 2 * 2 * B * 64 * 128 + 2 * 2 * total * 8 * 128 + 4 * B + 4 * (total // 16)
    else:
        assert work.tensor_flops == {"bfloat16": 2 * 128 * total * (512 + 64) + 2 * 128 * total * 512}
        assert work.bytes_moved == 2 * B * 128 * (512 + 64 + 512) + 2 * total * 576 + 4 * B + 4 * (total // 64)
    assert work.other_flops == 0


def test_conv_counts():
    N, C, O, H, W = 2, 1920, 640, 64, 64
    work = count("conv2d_3x3_sdxl_unet", "conv2d_3x3_sdxl_unet-n2-c1920-o640-64x64")
    assert work.tensor_flops == {"bfloat16": 2 * N * O * C * 9 * H * W} and work.other_flops == 0
    assert work.bytes_moved == 2 * (N * C * H * W + O * C * 9 + O + N * O * H * W)
    work = count("conv2d_3x3_backward_sdxl_unet", "conv2d_3x3_backward_sdxl_unet-n4-c1920-o640-64x64")
    N = 4
    assert work.tensor_flops == {"bfloat16": 2 * (2 * N * O * C * 9 * H * W)} and work.other_flops == N * O * H * W
    # x, weight, grad_y read; grad_x, grad_weight, grad_bias written
    assert work.bytes_moved == 2 * (2 * N * C * H * W + 2 * O * C * 9 + N * O * H * W + O)


def test_conv_formula_equals_what_the_reference_counts():
    from solforge.roofline import count_work

    defn, wl = workload("conv2d_3x3_sdxl_unet", "conv2d_3x3_sdxl_unet-n2-c640-o1280-32x32")
    counted = count_work(defn.model_copy(update={"solforge": defn.solforge.model_copy(update={"work": None})}), wl)
    assert counted.tensor_flops == {"float32": count_work(defn, wl).tensor_flops["bfloat16"]}  # 9 taps, exactly


@pytest.mark.parametrize("seq_len", [6000, 32768])
def test_ssd_counts(seq_len):
    B, H, P, N, G = 1, 80, 64, 128, 1
    chunks = [min(256, seq_len - s) for s in range(0, seq_len, 256)]
    causal_pairs = sum(n * (n + 1) for n in chunks)  # 2 x the visible (i, j <= i) pairs per chunk
    uuid = "mamba2_ssd_chunk_scan_h80_p64_n128-b1-s" + str(seq_len)
    work = count("mamba2_ssd_chunk_scan_h80_p64_n128", uuid)
    # C.B^T per group and the weighted x per head over the causal pairs; the state's write and read
    assert work.tensor_flops == {"bfloat16": B * ((G * N + H * P) * causal_pairs + 2 * 2 * H * P * N * seq_len)}
    assert work.other_flops == 0


def test_ssd_state_update_counts():
    b, H, P, N = 128, 80, 64, 128
    work = count("mamba2_ssd_state_update_h80_p64_n128", "mamba2_ssd_state_update_h80_p64_n128-b128")
    assert work.tensor_flops == {}
    # per state element: decay, write, add, times C, C's sum; per (head, p): dt x, D x, the add; per head: dt A, exp
    assert work.other_flops == 5 * b * H * P * N + 3 * b * H * P + 2 * b * H
    assert work.bytes_moved == 2 * 4 * b * H * P * N + 2 * 2 * b * H * P + 4 * b * H + 2 * 4 * H + 2 * 2 * b * N


# -- tolerances: honest low precision passes, wrong answers fail ------------------------------

DISTRIBUTIONS = ["normal", "large", "tiny", "mixed"]


def flash_kernel(name: str, inputs: dict, drop_half: bool = False, causal: bool = True) -> torch.Tensor:
    """The flash-style answer of one of the attention definitions; `drop_half` reads only
    the first half of each sequence's keys (a wrong kernel)."""
    if "paged" not in name:
        k, v = inputs["k"], inputs["v"]
        if drop_half:
            k, v = k[:, : k.shape[1] // 2], v[:, : v.shape[1] // 2]
        return flash_attention(inputs["q"], k, v, causal and "noncausal" not in name and not drop_half)
    outs = []
    mla = "mla" in name
    for b, length in enumerate(inputs["kv_lens"].tolist()):
        length = max(1, length // 2) if drop_half else length
        pages = inputs["page_table"][b]
        if mla:
            ckv = gather_sequence(inputs["ckv_cache"], pages, length)
            kpe = gather_sequence(inputs["kpe_cache"], pages, length)
            q = torch.cat([inputs["q_nope"][b], inputs["q_pe"][b]], dim=-1)[None, None]  # (1, 1, H, 576)
            k = torch.cat([ckv, kpe], dim=-1)[None, :, None]  # one shared KV head
            scale = 192 ** -0.5 * (0.1 * math.log(40) + 1) ** 2
            outs.append(flash_attention(q, k, ckv[None, :, None], causal=False, scale=scale)[0, 0])
        else:
            k = gather_sequence(inputs["k_cache"], pages, length)[None]
            v = gather_sequence(inputs["v_cache"], pages, length)[None]
            outs.append(flash_attention(inputs["q"][b][None, None], k, v, causal=False)[0, 0])
    return torch.stack(outs)


ATTENTION_TOLERANCE_CASES = ["gqa_prefill_causal_h64_kv8_d128", "gqa_prefill_causal_h28_kv4_d128",
                             "mha_prefill_causal_h12_d64", "mha_noncausal_h12_d64", "mha_noncausal_h20_d64",
                             "gqa_decode_paged_h64_kv8_d128_ps16", "mla_decode_paged_h128_ckv512_kpe64_ps64"]


@pytest.mark.parametrize("name", ATTENTION_TOLERANCE_CASES)
def test_attention_tolerance_accepts_flash_style_kernels_and_rejects_wrong_ones(name):
    for wl in smoke(name)[1][-1:]:  # the largest smoke shape
        for distribution in DISTRIBUTIONS:
            inputs, exact, tol = attention_case(name, wl, distribution)
            assert passes(flash_kernel(name, inputs), exact, tol), (wl.uuid, distribution)
        inputs, exact, tol = attention_case(name, wl, "normal")
        assert not passes(torch.zeros_like(exact), exact, tol), wl.uuid
        assert not passes(exact.double() * 1.05, exact, tol), wl.uuid
        if "noncausal" not in name and "paged" not in name:  # a kernel that forgets the causal mask
            assert not passes(flash_kernel(name, inputs, causal=False), exact, tol), wl.uuid
        else:  # a kernel that reads half the keys
            assert not passes(flash_kernel(name, inputs, drop_half=True), exact, tol), wl.uuid


def flash_attention_backward(q, k, v, do, causal: bool = True):
    """FlashAttention-2's backward as a kernel computes it: float32 scores and accumulation,
    P and dS rounded to bfloat16 for their matmuls, D = rowsum(dO * O) from the bfloat16 O."""
    scale = 1 / math.sqrt(q.shape[-1])
    q, k, v, do = q.float(), k.float(), v.float(), do.float()
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if causal:
        scores = scores.masked_fill(torch.ones(q.shape[1], k.shape[1], dtype=torch.bool).triu(1), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    p16 = p.bfloat16().float()
    o = torch.einsum("bhqk,bkhd->bqhd", p16, v).bfloat16().float()
    dv = torch.einsum("bhqk,bqhd->bkhd", p16, do)
    dp = torch.einsum("bqhd,bkhd->bhqk", do, v)
    ds = (p * (dp - (do * o).sum(-1).transpose(1, 2)[..., None]) * scale).bfloat16().float()
    dq = torch.einsum("bhqk,bkhd->bqhd", ds, k)
    dk = torch.einsum("bhqk,bqhd->bkhd", ds, q)
    return dq.bfloat16(), dk.bfloat16(), dv.bfloat16()


def test_attention_backward_tolerance_accepts_flash_style_and_rejects_wrong():
    defn, wls = smoke("mha_prefill_causal_backward_h12_d64")
    tol = defn.tolerance_for(defn.outputs["dq"].dtype)
    for wl in wls[-1:]:
        for distribution in DISTRIBUTIONS:  # the generators make every distribution N(0, 1)
            inputs = make_inputs(defn, wl, seed=1, distribution=distribution)
            exact = [g.bfloat16() for g in reference(defn)(**{n: t.double() for n, t in inputs.items()})]
            for got, want in zip(flash_attention_backward(**inputs), exact):
                assert passes(got, want, tol), (wl.uuid, distribution)
        for got, want in zip(flash_attention_backward(**inputs, causal=False), exact):
            assert not passes(got, want, tol)
        for want in exact:
            assert not passes(torch.zeros_like(want), want, tol)


def ssd_bf16_kernel(x, dt, A, B, C, D, chunk=256, carry=True, decay_state=True, skip_d=False):
    """mamba_ssm's chunked kernels in float32, rounding the chunk's score matrix (C.B times
    the decays and dt) and the states' B factors to bfloat16 before their matmuls. The flags
    make wrong kernels: no state carried between chunks, no decay of the state, no D."""
    b, L, H, P = x.shape
    rep = H // B.shape[2]
    xf, Bf, Cf = x.float(), B.float().repeat_interleave(rep, 2), C.float().repeat_interleave(rep, 2)
    state = torch.zeros(b, H, P, B.shape[3])
    y = torch.empty(b, L, H, P)
    for s in range(0, L, chunk):
        e = min(s + chunk, L)
        dtc = dt[:, s:e].float()
        cum = torch.cumsum(dtc * A.float(), 1)  # (b, l, H)
        seg = cum.transpose(1, 2)[..., :, None] - cum.transpose(1, 2)[..., None, :]
        causal = torch.ones(e - s, e - s, dtype=torch.bool).tril()
        decay = torch.exp(seg.masked_fill(~causal, -math.inf))
        scores = torch.einsum("bihn,bjhn->bhij", Cf[:, s:e], Bf[:, s:e]) * decay
        scores = (scores * dtc.transpose(1, 2)[:, :, None, :]).bfloat16().float()
        yc = torch.einsum("bhij,bjhp->bihp", scores, xf[:, s:e])
        if carry:
            yc = yc + torch.einsum("bihn,bhpn->bihp", Cf[:, s:e], state.bfloat16().float()) * torch.exp(cum)[..., None]
        y[:, s:e] = yc if skip_d else yc + D.float()[:, None] * xf[:, s:e]
        written = (Bf[:, s:e] * (torch.exp(cum[:, -1:] - cum) * dtc)[..., None]).bfloat16().float()
        chunk_decay = torch.exp(cum[:, -1])[:, :, None, None] if decay_state else 1.0
        state = state * chunk_decay + torch.einsum("bjhp,bjhn->bhpn", xf[:, s:e], written)
    return y.bfloat16(), state


def test_ssd_tolerance_accepts_a_bf16_kernel_and_rejects_wrong_ones():
    defn, wls = smoke("mamba2_ssd_chunk_scan_h80_p64_n128")
    tol_y, tol_state = (defn.tolerance_for(defn.outputs[n].dtype) for n in ("y", "final_state"))
    for wl in wls[-1:]:  # 300 tokens: a full chunk of 256 and a partial one
        for distribution in DISTRIBUTIONS:
            inputs = make_inputs(defn, wl, seed=1, distribution=distribution)
            y64, state64 = reference(defn)(**{n: t.double() for n, t in inputs.items()})
            exact = (y64.bfloat16(), state64.float())
            for chunk in (256, 16):
                y, state = ssd_bf16_kernel(**inputs, chunk=chunk)
                assert passes(y, exact[0], tol_y) and passes(state, exact[1], tol_state), (wl.uuid, distribution)
            if distribution == "normal":
                assert not passes(torch.zeros_like(exact[0]), exact[0], tol_y)
                assert not passes(torch.zeros_like(exact[1]), exact[1], tol_state)
                assert not passes(ssd_bf16_kernel(**inputs, chunk=16, carry=False)[0], exact[0], tol_y)
                assert not passes(ssd_bf16_kernel(**inputs, chunk=16, skip_d=True)[0], exact[0], tol_y)
                assert not passes(ssd_bf16_kernel(**inputs, chunk=16, decay_state=False)[1], exact[1], tol_state)


def test_deepseek_routing_tolerance_absorbs_float32_near_ties_only():
    """float32 and float64 choose differently only where two choice values are within float32
    rounding: a handful of rows in 10^4, inside the 99.9% ratio; a wrong bias use is not."""
    defn, _ = load_builtin("moe_grouped_topk_deepseek_v3")
    wl = Workload(uuid="ties", axes={"num_tokens": 4096})
    tol_w = defn.tolerance_for(defn.outputs["topk_weights"].dtype)
    tol_ids = defn.tolerance_for(defn.outputs["topk_ids"].dtype)
    for distribution in DISTRIBUTIONS:
        inputs = make_inputs(defn, wl, seed=2, distribution=distribution)
        w64, ids64 = reference(defn)(**{n: t.double() for n, t in inputs.items()})
        w32, ids32 = reference(defn)(**inputs)
        assert passes(w32, w64.float(), tol_w) and passes(ids32, ids64, tol_ids), distribution
    inputs = make_inputs(defn, wl, seed=2)
    w_nobias, ids_nobias = reference(defn)(router_logits=inputs["router_logits"],
                                           e_score_correction_bias=torch.zeros(256))
    assert not passes(ids_nobias, ids64, tol_ids)
    choice = inputs["router_logits"].double().sigmoid() + inputs["e_score_correction_bias"].double()
    weighted_by_choice = choice.gather(1, ids64.long())
    weighted_by_choice = weighted_by_choice / weighted_by_choice.sum(-1, keepdim=True) * 2.5
    assert not passes(weighted_by_choice.float(), w64.float(), tol_w)  # weights must be the unbiased scores
