"""Suite part A: norms, activations, softmax, cross-entropy, RoPE, embedding, fp8 quantization,
fused epilogues, sampling and four backward passes, shaped by published model configs, plus the
workloads added to the first eight definitions.

Each definition loads and checks; its workload set has the promised shape; its const axes are
the cited config's; its reference runs on the CPU smoke shapes (bfloat16 and float64), on meta
tensors at every real size, fits a GPU in float64, calls no forbidden shortcut, matches an
independent float64 computation (torch's own op in float64, autograd, or naive math), and has
SOL counts equal to a hand formula. Its tolerances accept an honest float32 kernel on every
input distribution and reject wrong outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from problems_support import (
    as_tuple,
    make_inputs,
    meta_inputs,
    peak_gib,
    reference,
    resolve_torch_name,
    smoke,
    smoke_cases,
    to_float64,
    workload,
)

from solforge.problems import builtin_names, builtin_root, load_builtin, select_workloads
from solforge.spec import Definition, Tolerance, check_definition, check_workload, load_dataset


@dataclass(frozen=True)
class Case:
    """What a definition must be: its models, its const axes (the configs' values), its stage tags."""

    family: str
    models: tuple[str, ...]
    axes: dict[str, int]
    stages: tuple[str, ...] = ("stage:prefill", "stage:decode")
    forward: str | None = None  # the forward definition of a backward pass
    fixed_var_axes: dict[str, int] = field(default_factory=dict)  # var axes the config fixes in real workloads


TRAINING = ("stage:training",)
SUITE_A: dict[str, Case] = {
    "rmsnorm_h8192": Case("rmsnorm", ("llama-3.1-70b",), {"hidden_size": 8192}),
    "rmsnorm_h3584": Case("rmsnorm", ("qwen2.5-7b",), {"hidden_size": 3584}),
    "rmsnorm_h7168": Case("rmsnorm", ("deepseek-v3",), {"hidden_size": 7168}),
    "gemma_rmsnorm_h3584": Case("gemma_rmsnorm", ("gemma-2-9b",), {"hidden_size": 3584}),
    "fused_add_rmsnorm_h8192": Case("fused_add_rmsnorm", ("qwen2.5-72b",), {"hidden_size": 8192}),
    "layernorm_h768_gpt2": Case("layernorm", ("gpt-2",), {"hidden_size": 768}),
    "layernorm_h768_vit_b16": Case("layernorm", ("vit-b-16",), {"hidden_size": 768}, stages=()),
    "layernorm_h1280_whisper": Case("layernorm", ("whisper-large-v3",), {"hidden_size": 1280}),
    "groupnorm_g32_sdxl": Case("groupnorm", ("sdxl",), {"num_groups": 32}, stages=()),
    "rmsnorm_backward_h4096": Case("rmsnorm_backward", ("llama-3.1-8b",), {"hidden_size": 4096}, TRAINING,
                                   forward="rmsnorm_h4096"),
    "layernorm_backward_h768_gpt2": Case("layernorm_backward", ("gpt-2",), {"hidden_size": 768}, TRAINING,
                                         forward="layernorm_h768_gpt2"),
    "silu_and_mul_backward_i14336": Case("silu_and_mul_backward", ("llama-3.1-8b",), {"intermediate_size": 14336},
                                         TRAINING, forward="silu_and_mul_i14336"),
    "cross_entropy_backward_v128256": Case("cross_entropy_backward", ("llama-3.1-8b",), {"vocab_size": 128256},
                                           TRAINING, forward="cross_entropy_v128256"),
    "silu_and_mul_i18944": Case("silu_and_mul", ("qwen2.5-7b",), {"intermediate_size": 18944}),
    "silu_and_mul_i28672": Case("silu_and_mul", ("llama-3.1-70b",), {"intermediate_size": 28672}),
    "gelu_tanh_and_mul_i14336": Case("gelu_tanh_and_mul", ("gemma-2-9b",), {"intermediate_size": 14336}),
    "gelu_tanh_i3072": Case("gelu_tanh", ("gpt-2",), {"inner_size": 3072}),
    "log_softmax_v152064": Case("log_softmax", ("qwen2.5-7b",), {"vocab_size": 152064}),
    "cross_entropy_v128256": Case("cross_entropy", ("llama-3.1-8b",), {"vocab_size": 128256}, TRAINING),
    "cross_entropy_v152064": Case("cross_entropy", ("qwen2.5-7b",), {"vocab_size": 152064}, TRAINING),
    "rope_neox_h28_kv4_d128": Case("rope_neox", ("qwen2.5-7b",),
                                   {"num_qo_heads": 28, "num_kv_heads": 4, "head_dim": 128}),
    "rope_neox_h64_kv8_d128": Case("rope_neox", ("llama-3.1-70b", "qwen2.5-72b"),
                                   {"num_qo_heads": 64, "num_kv_heads": 8, "head_dim": 128}),
    "rope_gptj_deepseek_v3_h128_d64": Case("rope_gptj", ("deepseek-v3",), {"num_heads": 128, "qk_rope_head_dim": 64}),
    "embedding_v128256_h4096": Case("embedding", ("llama-3.1-8b",), {"hidden_size": 4096},
                                    fixed_var_axes={"vocab_size": 128256}),
    "embedding_v152064_h3584": Case("embedding", ("qwen2.5-7b",), {"hidden_size": 3584},
                                    fixed_var_axes={"vocab_size": 152064}),
    "fp8_quant_per_token_h4096": Case("fp8_quant", ("llama-3.1-8b",), {"hidden_size": 4096}),
    "fp8_quant_per_token_h8192": Case("fp8_quant", ("llama-3.1-70b",), {"hidden_size": 8192}),
    "fused_add_rmsnorm_fp8_quant_h8192": Case("fused_add_rmsnorm_fp8", ("llama-3.1-70b",), {"hidden_size": 8192}),
    "silu_and_mul_fp8_quant_i14336": Case("silu_and_mul_fp8", ("mixtral-8x7b",), {"intermediate_size": 14336}),
    "top_k_renorm_v128256": Case("top_k_renorm", ("llama-3.1-8b",), {"vocab_size": 128256}, ("stage:decode",)),
    "top_k_top_p_sampling_v152064": Case("top_k_top_p_sampling", ("qwen2.5-7b",), {"vocab_size": 152064},
                                         ("stage:decode",)),
}
FIRST_EIGHT = [
    "rmsnorm_h4096", "fused_add_rmsnorm_h4096", "softmax_v128256", "silu_and_mul_i14336", "rope_neox_h32_kv8_d128",
    "gemm_bf16_llama31_8b", "gqa_prefill_causal_h32_kv8_d128", "gqa_decode_h32_kv8_d128",
]
NAMES = sorted(SUITE_A)
# The cited config of each model tag: a description naming the model must link it.
CONFIG_URLS = {
    "llama-3.1-8b": "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
    "llama-3.1-70b": "https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json",
    "qwen2.5-7b": "https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json",
    "qwen2.5-72b": "https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/config.json",
    "mixtral-8x7b": "https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json",
    "deepseek-v3": "https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json",
    "gemma-2-9b": "https://huggingface.co/google/gemma-2-9b/blob/main/config.json",
    "vit-b-16": "https://huggingface.co/google/vit-base-patch16-224/blob/main/config.json",
    "whisper-large-v3": "https://huggingface.co/openai/whisper-large-v3/blob/main/config.json",
    "gpt-2": "https://huggingface.co/openai-community/gpt2/blob/main/config.json",
    "sdxl": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/unet/config.json",
}
# The configs' epsilons, RoPE bases and the fp8 maximum (OCP FP8 spec), for the hand computations.
EPS = {"rmsnorm_h8192": 1e-5, "rmsnorm_h3584": 1e-6, "rmsnorm_h7168": 1e-6, "gemma_rmsnorm_h3584": 1e-6,
       "fused_add_rmsnorm_h8192": 1e-6, "layernorm_h768_gpt2": 1e-5, "layernorm_h768_vit_b16": 1e-12,
       "layernorm_h1280_whisper": 1e-5, "groupnorm_g32_sdxl": 1e-5, "rmsnorm_backward_h4096": 1e-5,
       "layernorm_backward_h768_gpt2": 1e-5, "fused_add_rmsnorm_fp8_quant_h8192": 1e-5}
ROPE_THETA = {"rope_neox_h28_kv4_d128": 1e6, "rope_neox_h64_kv8_d128": 5e5, "rope_gptj_deepseek_v3_h128_d64": 1e4}
FP8_MAX = 448.0
FP8_MIN_SCALE = 1.0 / (FP8_MAX * 512.0)  # vLLM's floor, which the definitions adopt


# -- helpers --------------------------------------------------------------------------------


def passes(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance) -> bool:
    """The harness's rule: ints exactly; floats |out - ref| <= atol + rtol * |ref| on at least
    required_matched_ratio of the elements, and finite wherever the reference is. (Stricter
    than problems_support.passes, which the built-in and part-B tests use: their outputs are
    all float and finite.)"""
    if not ref.dtype.is_floating_point:
        return torch.equal(out, ref)
    out, ref = out.double(), ref.double()
    if bool((torch.isfinite(ref) & ~torch.isfinite(out)).any()):
        return False
    ok = (out - ref).abs() <= tol.atol + tol.rtol * ref.abs()
    return ok.double().mean().item() >= tol.required_matched_ratio


def rounded(defn: Definition, outs: tuple) -> list[torch.Tensor]:
    """Reference outputs rounded to the declared dtypes, as the harness compares them."""
    return [o.to(spec.dtype.to_torch()) for o, spec in zip(outs, defn.outputs.values())]


# -- the data -------------------------------------------------------------------------------


def test_part_a_definitions_load_through_load_dataset_and_check_clean():
    ds = load_dataset(builtin_root())
    assert set(SUITE_A) | set(FIRST_EIGHT) <= set(ds.definitions)
    assert len(SUITE_A) >= 22
    assert sum(1 for c in SUITE_A.values() if c.forward) >= 4
    for name in SUITE_A:
        defn = ds.definitions[name]
        assert check_definition(defn) == [], name
        assert all(check_workload(defn, w) == [] for w in ds.workloads[name]), name


@pytest.mark.parametrize("name", NAMES + FIRST_EIGHT)
def test_workload_sets_span_the_real_range_with_held_out_and_smoke_shapes(name):
    defn, workloads = load_builtin(name)
    real = select_workloads(workloads, "all")
    held = select_workloads(workloads, "held-out")
    smoke_set = select_workloads(workloads, "smoke")
    assert len(real) >= 12 and len(held) >= 3, (len(real), len(held))
    assert 2 <= len(smoke_set) <= 3 and not any(w.held_out for w in smoke_set)
    assert len({w.uuid for w in workloads}) == len({w.label for w in workloads}) == len(workloads)
    for w in workloads:
        assert w.uuid.startswith(f"{name}-") and w.solforge.label
        assert set(w.inputs) == set(defn.inputs), w.uuid
        axes = defn.resolve_axes(w.axes)
        for constraint in defn.constraints:
            assert eval(constraint, {"__builtins__": {}}, dict(axes)), (w.uuid, constraint)
    for w in smoke_set:
        for axis, value in w.axes.items():
            assert value <= max(r.axes[axis] for r in real), (w.uuid, axis)
        elements = sum(math.prod(defn.shape_of(s, defn.resolve_axes(w.axes))) for s in defn.inputs.values())
        assert elements <= 5_000_000, w.uuid  # float64 inputs under 40 MB: well under a second on 2 cores


@pytest.mark.parametrize("name", [n for n in NAMES if SUITE_A[n].stages != TRAINING and SUITE_A[n].stages])
def test_token_workloads_span_decode_and_prefill(name):
    """Decode batches from 1 to 256 and, where the op has a prefill, up to 8k tokens or more."""
    defn, workloads = load_builtin(name)
    sizes = [next(iter(w.axes.values())) for w in select_workloads(workloads, "all")]
    assert min(sizes) <= 2 and any(s == 256 or s == 512 for s in sizes), sizes
    if "stage:prefill" in defn.tags:
        assert max(sizes) >= 8192, sizes


def test_first_eight_keep_their_original_workloads():
    """Added workloads only: the uuids the original tests name are still there."""
    for name, uuid in [("gqa_prefill_causal_h32_kv8_d128", "gqa_prefill_causal_h32_kv8_d128-b1-s16384"),
                       ("gemm_bf16_llama31_8b", "gemm_bf16_llama31_8b-gate_up-m128"),
                       ("rope_neox_h32_kv8_d128", "rope_neox_h32_kv8_d128-t1-p131072"),
                       ("rmsnorm_h4096", "rmsnorm_h4096-t6000"), ("softmax_v128256", "softmax_v128256-b200")]:
        assert workload(name, uuid)[1].uuid == uuid


@pytest.mark.parametrize("name", NAMES)
def test_model_tags_cite_the_published_configs_and_justify_the_tolerance(name):
    defn, workloads = load_builtin(name)
    case = SUITE_A[name]
    assert {t.removeprefix("model:") for t in defn.tags if t.startswith("model:")} == set(case.models)
    assert {t for t in defn.tags if t.startswith("stage:")} == set(case.stages)
    for model in case.models:
        assert CONFIG_URLS[model] in defn.description, model
    assert "Tolerance" in defn.description and "Forbidden" in defn.description
    for axis, value in case.axes.items():
        assert defn.axes[axis].type == "const" and defn.axes[axis].value == value, axis
    for axis, value in case.fixed_var_axes.items():
        assert {w.axes[axis] for w in select_workloads(workloads, "all")} == {value}, axis
    from solforge.bench.inputs import GENERATORS

    for gen in defn.solforge.input_generators.values():
        assert gen.generator in GENERATORS


@pytest.mark.parametrize("name", [n for n in NAMES if SUITE_A[n].forward])
def test_backward_passes_name_their_forward(name):
    defn, _ = load_builtin(name)
    forward = SUITE_A[name].forward
    assert "pass:backward" in defn.tags and f"forward:{forward}" in defn.tags
    assert forward in builtin_names()
    fwd, _ = load_builtin(forward)
    assert {t for t in fwd.tags if t.startswith("model:")} == {t for t in defn.tags if t.startswith("model:")}
    assert set(fwd.inputs) <= set(defn.inputs) | {"bias"}  # the forward's inputs, bar the bias of a LayerNorm


# -- forbidden calls ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forbidden_torch_names_exist(name):
    """A misspelled dotted name would never match a call: every torch one must resolve."""
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
    assert [f.message for f in static_findings(eager_solution(defn), defn)] == []


# -- references: smoke sizes on the CPU, every real size on meta -------------------------------


@pytest.mark.parametrize(("name", "uuid"), smoke_cases(NAMES))
def test_reference_runs_on_smoke_workloads(name, uuid):
    """In bfloat16 and upcast to float64, with the declared shapes; float outputs follow the
    precision (float64 when upcast), fp8 and integer outputs keep their declared dtype."""
    defn, wl = workload(name, uuid)
    axes = defn.resolve_axes(wl.axes)
    for upcast in (False, True):
        outs = as_tuple(reference(defn)(**make_inputs(defn, wl, upcast=upcast)))
        assert len(outs) == len(defn.outputs)
        for out, (oname, spec) in zip(outs, defn.outputs.items()):
            declared = spec.dtype.to_torch()
            assert tuple(out.shape) == defn.shape_of(spec, axes), oname
            wide = declared.is_floating_point and declared.itemsize >= 2
            assert out.dtype == (torch.float64 if upcast and wide else declared), oname
            assert torch.isfinite(out.double()).all(), oname


@pytest.mark.parametrize("name", NAMES)
def test_reference_runs_on_meta_at_every_real_size(name):
    """No data-dependent shapes or .item(): what roofline's counting needs. (The first eight,
    with the workloads added here, are run by test_problems_builtin.py.)"""
    defn, workloads = load_builtin(name)
    for wl in select_workloads(workloads, "all"):
        axes = defn.resolve_axes(wl.axes)
        for out, spec in zip(as_tuple(reference(defn)(**meta_inputs(defn, wl))), defn.outputs.values()):
            assert out.device.type == "meta" and out.dtype == spec.dtype.to_torch(), wl.uuid
            assert tuple(out.shape) == defn.shape_of(spec, axes), wl.uuid


def test_references_fit_a_gpu_at_every_real_size_even_in_float64():
    """Part A's definitions; test_problems_builtin.py checks the first eight at all their sizes."""
    worst = max((peak_gib(defn, wl), wl.uuid) for name in NAMES
                for defn in [load_builtin(name)[0]] for wl in select_workloads(load_builtin(name)[1], "all"))
    assert worst[0] < 40, worst  # of 80 GB, leaving the harness and the solution room


def test_the_peak_estimate_would_catch_unblocked_vocabulary_references():
    defn, wl = workload("cross_entropy_v128256", "cross_entropy_v128256-t16384")
    assert peak_gib(defn, wl) < 20
    assert peak_gib(defn, wl, T_BLOCK=16384) > 40  # (16384, 128256) float64 temporaries, 15.7 GiB each
    defn, wl = workload("log_softmax_v152064", "log_softmax_v152064-t8192")
    assert peak_gib(defn, wl) < 25 < 35 < peak_gib(defn, wl, ROW_BLOCK=8192)  # two (8192, 152064) more


# -- references against independent float64 computations ---------------------------------------


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x / (x.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()


def fp8_quantize(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row fp8 as the issue states it: scale = amax / 448, values y / scale cast to e4m3."""
    scale = y.abs().max(dim=-1).values / FP8_MAX
    return (y / scale[:, None]).to(torch.float8_e4m3fn), scale


def rope_cache(max_position: int, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The true [cos | sin] cache of `dim` rotary dims at base `theta`, and its angles (P, dim/2)."""
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angle = torch.arange(max_position, dtype=torch.float64)[:, None] * inv_freq
    return torch.cat([angle.cos(), angle.sin()], dim=-1), angle


def nucleus_sample(x: torch.Tensor, temperature: float, k: int, p: float, e: torch.Tensor) -> int:
    """One row of top-k / top-p sampling written over tie groups, in float64: the top-k logits by
    torch.topk, softmax, then whole groups of equal probability, most probable first, while the mass
    before the group is below p; the winner of the exponential race among the kept tokens."""
    x = x / temperature
    probs = torch.softmax(x.masked_fill(x < torch.topk(x, k).values[-1], -math.inf), dim=0)
    values, counts = torch.unique(probs[probs > 0], sorted=True, return_counts=True)
    mass, threshold = 0.0, None
    for value, count in zip(values.flip(0).tolist(), counts.flip(0).tolist()):
        if mass >= p:
            break
        threshold, mass = value, mass + value * count
    kept = probs >= threshold
    assert probs[kept].sum() >= p - 1e-12  # the nucleus holds at least p of the mass
    return int(torch.where(kept, probs / e, -1.0).argmax())


def independent(name: str, inputs: dict) -> tuple:
    """The outputs of `name` on float64 `inputs`, from torch's own ops, autograd or naive math."""
    family, eps = SUITE_A[name].family, EPS.get(name)
    if family in ("rmsnorm", "gemma_rmsnorm"):
        w = inputs["weight"] + (1.0 if family == "gemma_rmsnorm" else 0.0)
        return (rms_normalize(inputs["hidden_states"], eps) * w,)
    if family == "fused_add_rmsnorm":
        s = inputs["hidden_states"] + inputs["residual"]
        return rms_normalize(s, eps) * inputs["weight"], s
    if family == "layernorm":
        x = inputs["hidden_states"]
        return (F.layer_norm(x, x.shape[-1:], inputs["weight"], inputs["bias"], eps),)
    if family == "groupnorm":
        return (F.group_norm(inputs["x"], 32, inputs["weight"], inputs["bias"], eps),)
    if family in ("silu_and_mul", "gelu_tanh_and_mul"):
        gate, up = inputs["gate_up"].chunk(2, dim=-1)
        act = F.silu(gate) if family == "silu_and_mul" else F.gelu(gate, approximate="tanh")
        return (act * up,)
    if family == "gelu_tanh":
        return (F.gelu(inputs["x"], approximate="tanh"),)
    if family == "log_softmax":
        return (torch.log_softmax(inputs["logits"], dim=-1),)
    if family == "cross_entropy":
        return (F.cross_entropy(inputs["logits"], inputs["labels"], reduction="none", ignore_index=-100),)
    if family == "embedding":
        return (F.embedding(inputs["input_ids"], inputs["weight"]),)
    if family == "top_k_renorm":
        x, out = inputs["logits"], []
        for row, k in zip(x, inputs["top_k"].tolist()):
            out.append(torch.softmax(row.masked_fill(row < torch.topk(row, k).values[-1], -math.inf), dim=0))
        return (torch.stack(out),)
    if family == "top_k_top_p_sampling":
        rows = zip(inputs["logits"], inputs["temperature"].tolist(), inputs["top_k"].tolist(),
                   inputs["top_p"].tolist(), inputs["exponentials"])
        return (torch.tensor([nucleus_sample(*row) for row in rows]),)
    if family.endswith("_backward"):
        return backward_by_autograd(family, inputs, eps)
    raise AssertionError(f"no independent computation for {name}")


def backward_by_autograd(family: str, inputs: dict, eps: float | None) -> tuple:
    """The gradients autograd takes through the float64 forward (torch's own op where it has one)."""
    leaves = {n: t.clone().requires_grad_() for n, t in inputs.items() if t.is_floating_point() and n != "grad_loss"}
    if family == "rmsnorm_backward":
        y = rms_normalize(leaves["hidden_states"], eps) * leaves["weight"]
        wrt = ["hidden_states", "weight"]
    elif family == "layernorm_backward":
        x, bias = leaves["hidden_states"], torch.zeros_like(inputs["weight"], requires_grad=True)
        leaves["bias"] = bias
        y = F.layer_norm(x, x.shape[-1:], leaves["weight"], bias, eps)
        wrt = ["hidden_states", "weight", "bias"]
    elif family == "silu_and_mul_backward":
        gate, up = leaves["gate_up"].chunk(2, dim=-1)
        y = F.silu(gate) * up
        wrt = ["gate_up"]
    else:  # cross_entropy_backward
        y = F.cross_entropy(leaves["logits"], inputs["labels"], reduction="none", ignore_index=-100)
        wrt = ["logits"]
    upstream = inputs["grad_loss"] if family == "cross_entropy_backward" else inputs["grad_output"]
    return torch.autograd.grad(y, [leaves[n] for n in wrt], upstream)


EXACT_FAMILIES = ("rmsnorm", "gemma_rmsnorm", "fused_add_rmsnorm", "layernorm", "groupnorm", "silu_and_mul",
                  "gelu_tanh_and_mul", "gelu_tanh", "log_softmax", "cross_entropy", "embedding", "top_k_renorm",
                  "top_k_top_p_sampling", "rmsnorm_backward", "layernorm_backward", "silu_and_mul_backward",
                  "cross_entropy_backward")


@pytest.mark.parametrize("name", [n for n in NAMES if SUITE_A[n].family in EXACT_FAMILIES])
def test_reference_matches_an_independent_float64_computation(name):
    defn, smoke_set = smoke(name)
    for wl in smoke_set:
        inputs = make_inputs(defn, wl, upcast=True)
        for out, expected in zip(as_tuple(reference(defn)(**inputs)), independent(name, inputs)):
            if expected.dtype.is_floating_point:
                torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-12)
            else:
                assert torch.equal(out, expected), wl.uuid


def test_cross_entropy_smoke_inputs_exercise_ignored_labels():
    defn, smoke_set = smoke("cross_entropy_v128256")
    labels = make_inputs(defn, smoke_set[-1])["labels"]
    assert (labels == -100).any() and (labels >= 0).any()
    loss = reference(defn)(**make_inputs(defn, smoke_set[-1], upcast=True))
    assert torch.equal(loss == 0, labels == -100)


@pytest.mark.parametrize("name", ["rope_neox_h28_kv4_d128", "rope_neox_h64_kv8_d128", "rope_gptj_deepseek_v3_h128_d64"])
def test_rope_matches_a_complex_rotation_with_the_models_frequencies(name):
    """NeoX pairs (x[i], x[i + D/2]); DeepSeek's interleaved pairs (x[2i], x[2i + 1]). The
    cache is rebuilt with the model's true frequencies."""
    defn, smoke_set = smoke(name)
    neox = SUITE_A[name].family == "rope_neox"
    q_name, k_name = ("query", "key") if neox else ("q_pe", "k_pe")
    for wl in smoke_set:
        inputs = make_inputs(defn, wl, upcast=True)
        max_position, dim = inputs["cos_sin_cache"].shape
        cache, angle = rope_cache(max_position, dim, ROPE_THETA[name])
        outs = reference(defn)(**{**inputs, "cos_sin_cache": cache})
        turn = torch.polar(torch.ones_like(angle), angle)[inputs["positions"]]  # (T, D/2)
        for x, out in zip((inputs[q_name], inputs[k_name]), outs):
            z_turn = turn[:, None] if x.dim() == 3 else turn
            if neox:
                z = torch.complex(x[..., : dim // 2], x[..., dim // 2:]) * z_turn
                expected = torch.cat([z.real, z.imag], dim=-1)
            else:
                expected = torch.view_as_real(torch.view_as_complex(x.reshape(*x.shape[:-1], dim // 2, 2).contiguous())
                                              * z_turn).flatten(-2)
            torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["fp8_quant_per_token_h4096", "fp8_quant_per_token_h8192",
                                  "fused_add_rmsnorm_fp8_quant_h8192", "silu_and_mul_fp8_quant_i14336"])
def test_fp8_quantization_matches_amax_over_448(name):
    """Scale = amax / 448 of the float64 row (RMSNorm or SwiGLU first, by torch's own ops); the
    values are that row over the scale in e4m3, within one rounding of it, and the row's largest
    value maps to +-448 exactly."""
    defn, smoke_set = smoke(name)
    for wl in smoke_set:
        inputs = make_inputs(defn, wl, upcast=True)
        outs = reference(defn)(**inputs)
        if "rmsnorm" in name:
            s = inputs["hidden_states"] + inputs["residual"]
            y = F.rms_norm(s, s.shape[-1:], inputs["weight"], EPS[name])
            torch.testing.assert_close(outs[2], s, rtol=0, atol=0)
        elif "silu" in name:
            gate, up = inputs["gate_up"].chunk(2, dim=-1)
            y = F.silu(gate) * up
        else:
            y = inputs["hidden_states"]
        q, scale = fp8_quantize(y)
        torch.testing.assert_close(outs[1], scale, rtol=1e-12, atol=0)
        assert torch.equal(outs[0].view(torch.uint8), q.view(torch.uint8))
        dequantized = outs[0].double() * scale[:, None]
        # e4m3: 3 mantissa bits, half a step is 2^-4 relative; subnormal steps are 2^-9 of the scale
        assert ((dequantized - y).abs() <= 2**-4 * y.abs() + 2**-10 * scale[:, None]).all()
        assert (outs[0].double().abs().amax(dim=-1) == FP8_MAX).all()


def test_fp8_scale_floor_keeps_zero_and_small_rows_finite():
    defn, _ = load_builtin("fp8_quant_per_token_h4096")
    x = torch.zeros(3, 4096, dtype=torch.bfloat16)
    x[1], x[2] = 1e-4, 1.0
    q, scale = reference(defn)(hidden_states=x)
    assert torch.equal(scale[:2], torch.full((2,), FP8_MIN_SCALE)) and scale[2] == 1.0 / FP8_MAX
    assert (q[0].float() == 0).all() and torch.isfinite(q.float()).all() and (q[2].float() == FP8_MAX).all()


def test_exponential_race_samples_from_the_filtered_distribution():
    """The sampling reference on 4096 copies of one small row: the empirical frequencies of
    argmax(p / E) with E from the 'exponential' generator match the top-k / top-p distribution."""
    from solforge.bench.inputs import generate

    defn, _ = load_builtin("top_k_top_p_sampling_v152064")
    rows, gen = 4096, torch.Generator().manual_seed(0)
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -1.0], dtype=torch.float64).expand(rows, 6)
    e = generate("exponential", (rows, 6), torch.float64, {"rate": 1.0}, gen, "cpu")
    k, p = torch.full((rows,), 5, dtype=torch.int32), torch.full((rows,), 0.9, dtype=torch.float64)
    samples = reference(defn)(logits=logits, temperature=torch.ones(rows, dtype=torch.float64), top_k=k, top_p=p,
                              exponentials=e)
    probs = torch.softmax(logits[0, :5], dim=0)  # top-5; mass before each 0, .43, .69, .85, .94: 4 kept
    expected = torch.cat([probs[:4] / probs[:4].sum(), torch.zeros(2, dtype=torch.float64)])
    frequency = torch.bincount(samples, minlength=6).double() / rows
    assert frequency[4:].sum() == 0
    assert (frequency - expected).abs().max() < 4 * math.sqrt(0.25 / rows)  # four standard errors


# -- tolerances: an honest float32 kernel passes, wrong outputs fail -----------------------------


def _case(name: str, distribution: str) -> tuple[Definition, dict, list[torch.Tensor]]:
    """The inputs of the middle smoke workload (the first where a row is a whole vocabulary, over
    128k elements already) and the float64 reference rounded to the output dtypes."""
    defn, smoke_set = smoke(name)
    wide_rows = "vocab_size" in defn.axes and SUITE_A[name].family != "embedding"
    wl = smoke_set[0] if wide_rows else smoke_set[len(smoke_set) // 2]
    inputs = make_inputs(defn, wl, seed=1, distribution=distribution)
    exact = rounded(defn, as_tuple(reference(defn)(**to_float64(inputs))))
    return defn, inputs, exact


@pytest.mark.parametrize("distribution", ["normal", "large", "tiny", "mixed"])
def test_tolerances_accept_the_reference_run_in_float32_on_every_distribution(distribution):
    """The reference on bfloat16 inputs computes in float32 and rounds once, as an honest kernel."""
    for name in NAMES:
        defn, inputs, exact = _case(name, distribution)
        for out, ref, spec in zip(as_tuple(reference(defn)(**inputs)), exact, defn.outputs.values()):
            assert passes(out.to(ref.dtype), ref, defn.tolerance_for(spec.dtype)), name


@pytest.mark.parametrize("name", NAMES)
def test_tolerances_reject_zeros_and_scaled_outputs(name):
    defn, _, exact = _case(name, "normal")
    for ref, (oname, spec) in zip(exact, defn.outputs.items()):
        tol = defn.tolerance_for(spec.dtype)
        if not ref.dtype.is_floating_point:
            assert not passes(ref + 1, ref, tol), oname
            continue
        assert not passes(torch.zeros_like(ref), ref, tol), oname
        wrong = 1.5 if ref.dtype == torch.float8_e4m3fn else 1.05  # one e4m3 step is up to 1/8
        assert not passes(ref.double() * wrong, ref, tol), oname


def test_gemma_tolerance_rejects_a_llama_style_weight():
    defn, inputs, (exact,) = _case("gemma_rmsnorm_h3584", "normal")
    x = inputs["hidden_states"].double()
    llama = (rms_normalize(x, 1e-6) * inputs["weight"].double()).bfloat16()
    assert not passes(llama, exact, defn.tolerance_for(defn.outputs["output"].dtype))


def test_top_k_tolerance_rejects_one_token_too_many():
    """k one past the tokens the row keeps (bfloat16 ties can make k + 1 keep the same set)."""
    defn, inputs, (exact,) = _case("top_k_renorm_v128256", "normal")
    kept = (exact > 0).sum(dim=-1).to(torch.int32)
    assert (kept >= inputs["top_k"]).all()
    one_more = reference(defn)(logits=inputs["logits"].double(), top_k=kept + 1).float()
    assert not passes(one_more, exact, defn.tolerance_for(defn.outputs["probs"].dtype))


def test_cross_entropy_backward_tolerance_rejects_a_forgotten_label_term():
    """Without the one-hot, each row misses one element of 128256: the default 99.9% would pass it."""
    defn, inputs, (exact,) = _case("cross_entropy_backward_v128256", "normal")
    labels = inputs["labels"]
    forgot = exact.double().clone()
    rows = (labels != -100).nonzero()[:, 0]
    forgot[rows, labels[rows]] += inputs["grad_loss"].double()[rows]
    tol = defn.tolerance_for(defn.outputs["grad_logits"].dtype)
    assert not passes(forgot.bfloat16(), exact, tol)
    assert passes(forgot.bfloat16(), exact, Tolerance(atol=1e-10, rtol=0.016, required_matched_ratio=0.999))


def test_fp8_tolerances_accept_a_reciprocal_kernel_and_reject_the_fnuz_maximum():
    """Multiplying by a float32 1/scale moves values across rounding boundaries; amax / 240
    (e4m3fnuz's maximum) is a wrong scale however the values round."""
    defn, inputs, (q_ref, scale_ref) = _case("fp8_quant_per_token_h8192", "mixed")
    x = inputs["hidden_states"].float()
    scale = (x.abs().amax(dim=-1, keepdim=True) / FP8_MAX).clamp_min(FP8_MIN_SCALE)
    q = (x * (1.0 / scale)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    fp8_tol = defn.tolerance_for(defn.outputs["quantized"].dtype)
    f32_tol = defn.tolerance_for(defn.outputs["scale"].dtype)
    assert passes(q, q_ref, fp8_tol) and passes(scale[:, 0], scale_ref, f32_tol)
    fnuz = x.abs().amax(dim=-1) / 240.0
    assert not passes(fnuz, scale_ref, f32_tol)
    assert not passes((x / fnuz[:, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), q_ref, fp8_tol)


@pytest.mark.parametrize("name", ["fused_add_rmsnorm_fp8_quant_h8192", "silu_and_mul_fp8_quant_i14336"])
def test_fused_fp8_tolerances_accept_a_bfloat16_intermediate(name):
    """The unfused path rounds the normalized (or activated) row to bfloat16 before quantizing it."""
    defn, inputs, exact = _case(name, "mixed")
    if "rmsnorm" in name:
        s = inputs["hidden_states"].float() + inputs["residual"].float()
        y = F.rms_norm(s, s.shape[-1:], inputs["weight"].float(), EPS[name]).bfloat16().float()
    else:
        gate, up = inputs["gate_up"].float().chunk(2, dim=-1)
        y = (F.silu(gate) * up).bfloat16().float()
    scale = (y.abs().amax(dim=-1, keepdim=True) / FP8_MAX).clamp_min(FP8_MIN_SCALE)
    q = (y / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    for out, ref, spec in zip((q, scale[:, 0]), exact, defn.outputs.values()):
        assert passes(out, ref, defn.tolerance_for(spec.dtype)), spec.dtype


def test_embedding_tolerance_is_exact():
    defn, inputs, (exact,) = _case("embedding_v128256_h4096", "normal")
    tol = defn.tolerance_for(defn.outputs["output"].dtype)
    shifted = F.embedding((inputs["input_ids"] + 1) % inputs["weight"].shape[0], inputs["weight"])
    assert passes(F.embedding(inputs["input_ids"], inputs["weight"]), exact, tol)
    assert not passes(shifted, exact, tol)


# -- work --------------------------------------------------------------------------------------

BF16 = 2


def _hand_work(name: str, axes: dict[str, int]) -> tuple[int, int]:
    """(other FLOPs, compulsory bytes) by hand, one formula per family. FLOPs count one per
    element of each elementwise op of the reference and one per input element of a reduction,
    as roofline.count_work does; per-row scalar work (dividing a sum by H, adding eps, sqrt and
    a reciprocal) is the small second term."""
    T = axes.get("num_tokens", axes.get("batch_size", axes.get("num_rows")))
    family = SUITE_A[name].family
    if family == "rmsnorm":  # x*x, sum, x*inv_rms, *w; per row /H, +eps, sqrt, 1/., *1
        H = axes["hidden_size"]
        return 4 * T * H + 5 * T, BF16 * (2 * T * H + H)
    if family == "gemma_rmsnorm":  # as rmsnorm, plus 1 + weight once per column
        H = axes["hidden_size"]
        return 4 * T * H + H + 5 * T, BF16 * (2 * T * H + H)
    if family == "fused_add_rmsnorm":  # as rmsnorm, plus the add; two inputs and two outputs of (T, H)
        H = axes["hidden_size"]
        return 5 * T * H + 5 * T, BF16 * (4 * T * H + H)
    if family == "fused_add_rmsnorm_fp8":  # + add; abs, amax, /scale, clamp; per row also /448, clamp
        H = axes["hidden_size"]
        return 9 * T * H + 7 * T, BF16 * (3 * T * H + H) + T * H + 4 * T
    if family == "layernorm":  # sum, -mean, c*c, sum, *inv_std, *w, +b; per row two /H, +eps, sqrt, 1/., *1
        H = axes["hidden_size"]
        return 7 * T * H + 6 * T, BF16 * (2 * T * H + 2 * H)
    if family == "groupnorm":  # sum, -mean, c*c, sum, /std, *w, +b; per group two /n, +eps, sqrt
        n, C = axes["batch_size"] * axes["channels"] * axes["height"] * axes["width"], axes["channels"]
        return 7 * n + 4 * axes["batch_size"] * 32, BF16 * (2 * n + 2 * C)
    if family == "silu_and_mul":  # -g, exp, 1+, g/., *up
        inter = axes["intermediate_size"]
        return 5 * T * inter, BF16 * 3 * T * inter
    if family == "silu_and_mul_fp8":  # as silu_and_mul, then abs, amax, /scale, clamp; per row /448, clamp
        inter = axes["intermediate_size"]
        return 9 * T * inter + 2 * T, BF16 * 2 * T * inter + T * inter + 4 * T
    if family == "gelu_tanh_and_mul":  # g*g, *g, *0.044715, g+, *sqrt(2/pi), tanh, 1+, 0.5*g, *., *up
        inter = axes["intermediate_size"]
        return 10 * T * inter, BF16 * 3 * T * inter
    if family == "gelu_tanh":  # as above without the gate's *up
        inner = axes["inner_size"]
        return 9 * T * inner, BF16 * 2 * T * inner
    if family == "silu_and_mul_backward":  # sigmoid 5, grad_up 2, grad_gate 6 per element of (T, I)
        inter = axes["intermediate_size"]
        return 13 * T * inter, BF16 * 5 * T * inter
    if family == "log_softmax":  # amax, -max, exp, sum, - log; one log per row
        V = axes["vocab_size"]
        return 5 * T * V + T, BF16 * T * V + 4 * T * V
    if family == "cross_entropy_backward":  # amax, -max, exp, sum, /sum, -one_hot, *scale; per row !=, 2 where
        V = axes["vocab_size"]
        return 7 * T * V + 3 * T, 2 * BF16 * T * V + 8 * T + 4 * T
    if family == "rope_neox":  # per rotated pair 4 multiplies and 2 adds: 3 per element of q and k
        heads, D = axes["num_qo_heads"] + axes["num_kv_heads"], axes["head_dim"]
        return 3 * T * heads * D, 4 * T * heads * D + 8 * T
    if family == "layernorm_backward":  # 16 per element (see the reference), 8 per row
        H = axes["hidden_size"]
        return 16 * T * H + 8 * T, BF16 * (3 * T * H + 3 * H)
    if family == "cross_entropy":  # amax, -max, exp, sum; per row log, +max, !=, where, lse - x, where
        V = axes["vocab_size"]
        return 4 * T * V + 6 * T, BF16 * T * V + 8 * T + 4 * T
    if family == "rope_gptj":  # per pair 4 multiplies and 2 adds: 3 per rotated element
        H, R = axes["num_heads"], axes["qk_rope_head_dim"]
        return 3 * T * (H + 1) * R, 4 * T * (H + 1) * R + 8 * T
    if family == "fp8_quant":  # abs, amax, /scale, clamp; per row /448, clamp
        H = axes["hidden_size"]
        return 4 * T * H + 2 * T, BF16 * T * H + T * H + 4 * T
    if family == "rmsnorm_backward":  # 11 per element (see the reference), 6 per row
        H = axes["hidden_size"]
        return 11 * T * H + 6 * T, BF16 * (3 * T * H + 2 * H)
    if family == "top_k_renorm":  # solforge.work: compare, exp, sum, scale
        V = axes["vocab_size"]
        return 4 * T * V, BF16 * T * V + 4 * T + 4 * T * V
    if family == "top_k_top_p_sampling":  # solforge.work: 6 per logit
        V = axes["vocab_size"]
        return 6 * T * V, BF16 * T * V + 4 * T * 3 + 4 * T * V + 8 * T
    if family == "embedding":  # no arithmetic; ids, output, expected distinct rows
        H, V = axes["hidden_size"], axes["vocab_size"]
        return 0, round(8 * T + BF16 * T * H + BF16 * H * V * (1 - (1 - 1 / V) ** T))
    raise AssertionError(family)


def _one_real_workload_per_family() -> list[tuple[str, str]]:
    """The first definition of each family, at a held-out (or else the last real) workload."""
    cases, seen = [], set()
    for name in NAMES:
        if SUITE_A[name].family not in seen:
            seen.add(SUITE_A[name].family)
            real = select_workloads(load_builtin(name)[1], "all")
            cases.append((name, next((w for w in real if w.held_out), real[-1]).uuid))
    return cases


@pytest.mark.parametrize(("name", "uuid"), _one_real_workload_per_family())
def test_sol_counts_match_hand_formulas(name, uuid):
    from solforge.roofline import count_work

    defn, wl = workload(name, uuid)
    work = count_work(defn, wl)
    other_flops, bytes_moved = _hand_work(name, defn.resolve_axes(wl.axes))
    assert work.tensor_flops == {}
    assert (work.other_flops, work.bytes_moved) == (other_flops, bytes_moved)


def test_embedding_bytes_are_far_below_the_whole_table():
    """A decode step reads a few rows of the 1 GB table, not all of it."""
    from solforge.roofline import count_work

    defn, wl = workload("embedding_v128256_h4096", "embedding_v128256_h4096-t16")
    bytes_moved = count_work(defn, wl).bytes_moved
    assert abs(bytes_moved - (8 * 16 + 2 * 2 * 16 * 4096)) < 2 * 4096  # 16 rows read (a repeat is unlikely)
    assert bytes_moved < 1e-3 * 2 * 128256 * 4096
