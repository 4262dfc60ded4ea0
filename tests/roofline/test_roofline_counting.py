"""count_work: FLOPs and bytes of hand-derivable references, overrides, and failures."""

from __future__ import annotations

import time

import pytest

from solforge.roofline import Work, count_work
from solforge.spec import Definition, SpecError, Workload

GEMM_REFERENCE = """import torch

def run(a, b):
    return a @ b
"""

# The same ops as FlashInfer's rmsnorm reference. By hand, per aten op, for x (T, H):
# _to_copy 0, pow T*H, mean (a reduction: one per input element) T*H, add eps T,
# rsqrt T, mul T*H, _to_copy of the weight 0, mul T*H, _to_copy 0.
RMSNORM_REFERENCE = """import torch

def run(x, w, eps):
    xf = x.to(torch.float32)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * w.to(torch.float32)).to(x.dtype)
"""

# Causal GQA prefill written step by step: the mask is applied after the full QK^T.
# Other FLOPs by hand: mul by the scale B*Hq*S*S, tril S*S, bitwise_not S*S,
# masked_fill B*Hq*S*S, softmax B*Hq*S*S; repeat_interleave, ones and casts 0.
ATTENTION_REFERENCE = """import math
import torch

def run(q, k, v):
    # q: (B, Hq, S, D); k, v: (B, Hkv, S, D)
    S, D = q.shape[2], q.shape[3]
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)  # (B, Hq, S, D)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * (1.0 / math.sqrt(D))  # (B, Hq, S, S)
    causal = torch.ones(S, S, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    p = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.matmul(p, v)  # (B, Hq, S, D)
"""


def gemm_definition(work: dict | None = None, reference: str = GEMM_REFERENCE, dtype: str = "bfloat16") -> Definition:
    data = {
        "name": "gemm",
        "op_type": "gemm",
        "axes": {"M": {"type": "var"}, "N": {"type": "var"}, "K": {"type": "var"}},
        "inputs": {"a": {"shape": ["M", "K"], "dtype": dtype}, "b": {"shape": ["K", "N"], "dtype": dtype}},
        "outputs": {"c": {"shape": ["M", "N"], "dtype": dtype}},
        "reference": reference,
    }
    if work is not None:
        data["solforge"] = {"work": work}
    return Definition.model_validate(data)


def rmsnorm_definition() -> Definition:
    return Definition.model_validate({
        "name": "rmsnorm",
        "op_type": "rmsnorm",
        "axes": {"T": {"type": "var"}, "H": {"type": "const", "value": 128}},
        "inputs": {
            "x": {"shape": ["T", "H"], "dtype": "bfloat16"},
            "w": {"shape": ["H"], "dtype": "bfloat16"},
            "eps": {"shape": None, "dtype": "float32"},
        },
        "outputs": {"y": {"shape": ["T", "H"], "dtype": "bfloat16"}},
        "reference": RMSNORM_REFERENCE,
    })


def attention_definition(work: dict | None = None) -> Definition:
    data = {
        "name": "gqa_causal_prefill",
        "op_type": "attention",
        "axes": {
            "B": {"type": "var"},
            "S": {"type": "var"},
            "Hq": {"type": "const", "value": 8},
            "Hkv": {"type": "const", "value": 2},
            "D": {"type": "const", "value": 64},
        },
        "inputs": {
            "q": {"shape": ["B", "Hq", "S", "D"], "dtype": "bfloat16"},
            "k": {"shape": ["B", "Hkv", "S", "D"], "dtype": "bfloat16"},
            "v": {"shape": ["B", "Hkv", "S", "D"], "dtype": "bfloat16"},
        },
        "outputs": {"o": {"shape": ["B", "Hq", "S", "D"], "dtype": "bfloat16"}},
        "reference": ATTENTION_REFERENCE,
    }
    if work is not None:
        data["solforge"] = {"work": work}
    return Definition.model_validate(data)


def workload(**axes: int) -> Workload:
    return Workload(uuid="w-" + "-".join(f"{k}{v}" for k, v in axes.items()), axes=axes)


def simple_definition(reference: str, inputs: dict, outputs: dict, **extra) -> Definition:
    return Definition.model_validate({
        "name": "probe", "op_type": "probe", "axes": {"T": {"type": "var"}, "H": {"type": "const", "value": 16}},
        "inputs": inputs, "outputs": outputs, "reference": reference, **extra,
    })


# -- hand-derived counts ---------------------------------------------------------------

@pytest.mark.parametrize(("M", "N", "K"), [(64, 48, 32), (1, 4096, 7168)])
def test_gemm_counts_2mnk_and_compulsory_bytes(M, N, K):
    work = count_work(gemm_definition(), workload(M=M, N=N, K=K))
    assert work.tensor_flops == {"bfloat16": 2 * M * N * K}
    assert work.other_flops == 0
    assert work.bytes_moved == 2 * (M * K + K * N + M * N)
    assert work.total_flops == 2 * M * N * K
    assert work.arithmetic_intensity == pytest.approx(2 * M * N * K / work.bytes_moved)


def test_gemm_dtype_key_and_itemsize_follow_the_operands():
    work = count_work(gemm_definition(dtype="float32"), workload(M=8, N=8, K=8))
    assert work.tensor_flops == {"float32": 2 * 8 * 8 * 8}
    assert work.bytes_moved == 4 * 3 * 64


@pytest.mark.parametrize("T", [1, 7, 4096])
def test_rmsnorm_counts(T):
    H = 128
    eps = {"eps": {"type": "scalar", "value": 1e-6}}
    work = count_work(rmsnorm_definition(), Workload(uuid="r", axes={"T": T}, inputs=eps))
    assert work.tensor_flops == {}
    assert work.bytes_moved == 2 * (2 * T * H + H)  # x read, y written, w read; eps is a scalar
    assert work.other_flops == 4 * T * H + 2 * T
    assert T * H <= work.other_flops <= 8 * T * H


def test_attention_counts_the_full_product_of_a_masked_reference():
    B, S, Hq, D = 2, 64, 8, 64
    work = count_work(attention_definition(), workload(B=B, S=S))
    assert work.tensor_flops == {"bfloat16": 4 * B * Hq * S * S * D}  # QK^T and PV, each 2*S*S*D per head
    assert work.other_flops == 3 * B * Hq * S * S + 2 * S * S
    assert work.bytes_moved == 2 * (2 * B * Hq * S * D + 2 * B * 2 * S * D)


def test_attention_override_gives_the_causal_half():
    B, S, Hq, D = 2, 64, 8, 64
    # Causal: S*(S+1)/2 (query, key) pairs per head, 2*D FLOPs each, in QK^T and in PV.
    half = {"tensor_flops": {"bfloat16": "2 * B * Hq * S * (S + 1) * D"}}
    work = count_work(attention_definition(half), workload(B=B, S=S))
    assert work.tensor_flops == {"bfloat16": 2 * B * Hq * S * (S + 1) * D}
    assert work.other_flops == 3 * B * Hq * S * S + 2 * S * S  # still counted from the reference
    assert work.bytes_moved == count_work(attention_definition(), workload(B=B, S=S)).bytes_moved


# -- what counts as what ---------------------------------------------------------------

def test_data_movement_counts_no_flops():
    reference = """import torch

def run(x):
    y = torch.cat([x, x], dim=0).t().contiguous().reshape(-1, 16).to(torch.float32)
    z = torch.zeros_like(y) + 0  # the add is arithmetic: counted
    idx = torch.arange(y.shape[0], device=x.device)
    return torch.stack([y[idx], z]).flip(0)[0].clone()
"""
    d = simple_definition(reference, {"x": {"shape": ["T", "H"], "dtype": "bfloat16"}},
                          {"y": {"shape": ["T", "H"], "dtype": "float32"}})
    work = count_work(d, workload(T=5))
    assert work.tensor_flops == {}
    assert work.other_flops == 2 * 5 * 16  # only the `+ 0`, on the (2T, H) tensor


def test_reductions_count_their_inputs_and_elementwise_their_outputs():
    reference = """import torch

def run(a, b):
    return (a + b).sum(dim=-1) + a.amax(dim=-1)
"""
    d = simple_definition(reference, {"a": {"shape": ["T", "H"], "dtype": "float32"},
                                      "b": {"shape": ["H"], "dtype": "float32"}},
                          {"y": {"shape": ["T"], "dtype": "float32"}})
    T, H = 3, 16
    work = count_work(d, workload(T=T))
    assert work.other_flops == T * H + T * H + T * H + T  # add, sum, amax, final add
    assert work.bytes_moved == 4 * (T * H + H + T)


def test_inference_mode_linear_is_decomposed_into_its_matmul():
    reference = """import torch
import torch.nn.functional as F

def run(x, w):
    with torch.inference_mode():
        return F.linear(x, w)
"""
    d = simple_definition(reference, {"x": {"shape": ["T", "H"], "dtype": "float16"},
                                      "w": {"shape": ["H", "H"], "dtype": "float16"}},
                          {"y": {"shape": ["T", "H"], "dtype": "float16"}})
    assert count_work(d, workload(T=10)).tensor_flops == {"float16": 2 * 10 * 16 * 16}


def test_int8_and_fp8_matmuls_are_keyed_by_operand_dtype():
    reference = """import torch

def run(a, b, qa, qb):
    one = torch.ones((), device=a.device)
    c = torch._scaled_mm(qa, qb.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    return torch._int_mm(a, b), c
"""
    d = Definition.model_validate({
        "name": "quant", "op_type": "gemm", "axes": {"M": {"type": "const", "value": 32}},
        "inputs": {"a": {"shape": ["M", "M"], "dtype": "int8"}, "b": {"shape": ["M", "M"], "dtype": "int8"},
                   "qa": {"shape": ["M", "M"], "dtype": "float8_e4m3fn"},
                   "qb": {"shape": ["M", "M"], "dtype": "float8_e4m3fn"}},
        "outputs": {"c": {"shape": ["M", "M"], "dtype": "int32"}, "d": {"shape": ["M", "M"], "dtype": "bfloat16"}},
        "reference": reference,
    })
    work = count_work(d, workload())
    assert work.tensor_flops == {"int8": 2 * 32**3, "float8_e4m3fn": 2 * 32**3}
    assert work.bytes_moved == 4 * 32 * 32 + 4 * 32 * 32 + 2 * 32 * 32


# -- overrides -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("formulas", "expected"),
    [
        ({"other_flops": "M * N"}, ({"bfloat16": 2 * 4 * 5 * 6}, 4 * 5, 2 * (4 * 6 + 6 * 5 + 4 * 5))),
        ({"bytes": "M + N + K"}, ({"bfloat16": 2 * 4 * 5 * 6}, 0, 15)),
        ({"tensor_flops": {"float8_e4m3": "M * N * K"}}, ({"float8_e4m3fn": 4 * 5 * 6}, 0, 2 * (24 + 30 + 20))),
        ({"tensor_flops": {"bfloat16": "1", "float16": "2"}, "other_flops": "3", "bytes": "4"},
         ({"bfloat16": 1, "float16": 2}, 3, 4)),
    ],
)
def test_overrides_replace_field_by_field(formulas, expected):
    work = count_work(gemm_definition(formulas), workload(M=4, N=5, K=6))
    assert (work.tensor_flops, work.other_flops, work.bytes_moved) == expected


def test_full_formulas_never_run_the_reference():
    broken = "def run(a, b):\n    raise RuntimeError('the reference ran')\n"
    formulas = {"tensor_flops": {}, "other_flops": "M * N"}  # an explicit {}: no tensor-core work
    work = count_work(gemm_definition(formulas, reference=broken), workload(M=4, N=5, K=6))
    assert work == Work({}, 20, 2 * (24 + 30 + 20))
    with pytest.raises(SpecError, match="the reference ran"):
        count_work(gemm_definition({"other_flops": "M * N"}, reference=broken), workload(M=4, N=5, K=6))


def test_bad_formula_names_the_field():
    with pytest.raises(SpecError, match=r"definition 'gemm': solforge.work.other_flops: unknown axis 'L'"):
        count_work(gemm_definition({"other_flops": "L * N"}), workload(M=4, N=5, K=6))
    with pytest.raises(SpecError, match=r"solforge.work.tensor_flops: unknown dtype 'bf16'"):
        count_work(gemm_definition({"tensor_flops": {"bf16": "M"}}), workload(M=4, N=5, K=6))
    with pytest.raises(SpecError, match=r"solforge.work.bytes: expected a non-negative count"):
        count_work(gemm_definition({"bytes": "M - N"}), workload(M=4, N=5, K=6))


# -- failures --------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "    return x[x > 0].sum()",  # boolean-mask indexing: nonzero
    "    return x * x.sum().item()",  # .item()
    "    n = int(x.max())\n    return x[:n]",  # a Python int from a tensor
])
def test_data_dependent_reference_asks_for_formulas(body):
    reference = f"import torch\n\ndef run(x):\n{body}\n"
    d = simple_definition(reference, {"x": {"shape": ["T", "H"], "dtype": "float32"}},
                          {"y": {"shape": ["T", "H"], "dtype": "float32"}})
    with pytest.raises(SpecError) as info:
        count_work(d, workload(T=4))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("definition 'probe': reference: cannot run on meta tensors")
    assert "solforge.work formulas for tensor_flops and other_flops" in message


def test_data_dependent_reference_with_formulas_is_counted_from_them():
    reference = "import torch\n\ndef run(x):\n    return x[x > 0].sum()\n"
    d = simple_definition(reference, {"x": {"shape": ["T", "H"], "dtype": "float32"}},
                          {"y": {"shape": None, "dtype": "float32"}},
                          solforge={"work": {"tensor_flops": {}, "other_flops": "2 * T * H"}})
    assert count_work(d, workload(T=4)) == Work({}, 2 * 4 * 16, 4 * 4 * 16)
    partial = simple_definition(reference, {"x": {"shape": ["T", "H"], "dtype": "float32"}},
                                {"y": {"shape": None, "dtype": "float32"}},
                                solforge={"work": {"other_flops": "2 * T * H"}})
    with pytest.raises(SpecError, match="formulas for tensor_flops$"):
        count_work(partial, workload(T=4))


def test_reference_without_run_or_with_a_syntax_error():
    with pytest.raises(SpecError, match="defines no top-level function 'run'"):
        no_run = gemm_definition(reference="import torch\ndef forward(a, b):\n    return a @ b\n")
        count_work(no_run, workload(M=1, N=1, K=1))
    with pytest.raises(SpecError, match="does not load \\(SyntaxError"):
        count_work(gemm_definition(reference="def run(a, b):\n    return a @\n"), workload(M=1, N=1, K=1))


def test_scalar_inputs_take_the_workload_value_or_need_one():
    # The scalar is used as a size, so a wrong value would change the count.
    reference = "import torch\n\ndef run(x, k):\n    return torch.topk(x, k, dim=-1).values * 2\n"
    d = simple_definition(reference, {"x": {"shape": ["T", "H"], "dtype": "float32"},
                                      "k": {"shape": None, "dtype": "int32"}},
                          {"y": {"shape": ["T", "H"], "dtype": "float32"}})
    given = Workload(uuid="k3", axes={"T": 2}, inputs={"k": {"type": "scalar", "value": 3}})
    assert count_work(d, given).other_flops > count_work(
        d, Workload(uuid="k1", axes={"T": 2}, inputs={"k": {"type": "scalar", "value": 1}})
    ).other_flops
    with pytest.raises(SpecError, match=r"^workload nok: inputs.k: scalar input needs"):
        count_work(d, Workload(uuid="nok", axes={"T": 2}))
    generated = simple_definition(reference, d.model_dump()["inputs"], d.model_dump()["outputs"],
                                  solforge={"input_generators": {"k": {"generator": "randint",
                                                                       "args": {"low": 1, "high": 4}}}})
    assert count_work(generated, Workload(uuid="gen", axes={"T": 2})).other_flops > 0


def test_results_are_not_shared_between_calls():
    first = count_work(gemm_definition(), workload(M=2, N=2, K=2))
    first.tensor_flops["bfloat16"] = 0
    assert count_work(gemm_definition(), workload(M=2, N=2, K=2)).tensor_flops == {"bfloat16": 16}


# -- speed -----------------------------------------------------------------------------

def test_large_shapes_count_in_well_under_a_second():
    # The first dispatch mode in a process imports torch._dynamo (about a second on
    # this CPU), whatever the shape; warm that up on a toy shape, then time real ones.
    count_work(gemm_definition(), workload(M=2, N=2, K=2))
    start = time.perf_counter()
    gemm = count_work(gemm_definition(), workload(M=8192, N=8192, K=8192))
    attention = count_work(attention_definition(), workload(B=1, S=32768))
    elapsed_s = time.perf_counter() - start
    assert gemm.tensor_flops == {"bfloat16": 2 * 8192**3}
    assert attention.tensor_flops == {"bfloat16": 4 * 8 * 32768**2 * 64}
    assert elapsed_s < 0.5
