"""kernelize: numba seed winners swap into a tiny Llama as torch.library custom ops, change its
forward (their implementations run), keep the logits within bf16 tolerance, trace under
torch.compile(fullgraph=True), and fall back, once-warned, outside what they were tuned for."""

from __future__ import annotations

import warnings

import pytest
from runtime_support import build_tiny, logits, token_ids

import solforge
from solforge.runtime.check import TOLERANCES, compare_logits
from solforge.runtime.dispatch import KernelFallbackWarning
from solforge.runtime.kernelize import kernels_of
from solforge.runtime.winners import Winner, load_winner
from solforge.spec import SpecError


def test_kernelize_runs_the_custom_ops_and_keeps_logits_close(tiny):
    import torch

    model = build_tiny(tiny["config"]).model
    ids = token_ids()
    ref = logits(model, ids)
    solforge.kernelize(model, winners=list(tiny["winners"].values()), device="cpu", datasets=[tiny["profile"]])
    record = kernels_of(model)
    assert set(record.dispatchers) == {"rmsnorm_h64", "fused_add_rmsnorm_h64", "silu_and_mul_i128"}
    # the swapped modules: every norm (5), 2 decoder layers (fused add + norm), 2 MLPs
    assert len(record.modules("rmsnorm_h64")) == 5
    assert len(record.modules("fused_add_rmsnorm_h64")) == 2
    assert len(record.modules("silu_and_mul_i128")) == 2
    start = record.calls()  # ops are per process: other tests' calls count too
    out = logits(model, ids)
    # one forward: both input_layernorms and the final norm (the fused kernel does the
    # post_attention_layernorms), one fused call and one MLP per layer
    ran = {k: v - start[k] for k, v in record.calls().items()}
    assert ran == {"rmsnorm_h64": 3, "fused_add_rmsnorm_h64": 2, "silu_and_mul_i128": 2}
    err = compare_logits([ref], [out], TOLERANCES["bfloat16"])
    assert err.max_rel <= TOLERANCES["bfloat16"]
    assert err.decisive_top1 == 1.0
    # revert puts every original forward back: bit-identical logits again, no more kernel calls
    ops = [op for d in record.dispatchers.values() for op in d.ops]
    record.revert()
    before = [op.calls for op in ops]
    assert torch.equal(logits(model, ids), ref)
    assert [op.calls for op in ops] == before


def test_a_wrong_kernel_is_visible_in_the_logits(tiny, tmp_path):
    """The check's teeth: the seed with the wrong eps (1e-1 instead of 1e-5) moves the logits
    beyond tolerance, so a kernel that runs but computes something else cannot pass unseen."""
    from runtime_support import seed_winner

    definition = tiny["dataset"].definitions["rmsnorm_h64"].model_copy(deep=True)
    definition.reference = definition.reference.replace("eps = 1e-05", "eps = 0.1")
    model = build_tiny(tiny["config"]).model
    ids = token_ids(1)
    ref = logits(model, ids)
    winner = load_winner(seed_winner(tmp_path / "wrong", definition))
    for _, norm in [(n, m) for n, m in model.named_modules() if type(m).__name__ == "LlamaRMSNorm"]:
        norm.variance_epsilon = 0.1  # the binding checks eps against the reference: make the model agree
    solforge.kernelize(model, winners=[winner], device="cpu")
    for _, norm in [(n, m) for n, m in model.named_modules() if type(m).__name__ == "LlamaRMSNorm"]:
        norm.variance_epsilon = 1e-5
    err = compare_logits([ref], [logits(model, ids)], TOLERANCES["bfloat16"])
    assert err.max_rel > TOLERANCES["bfloat16"]


def test_a_kernelized_norm_traces_under_torch_compile_fullgraph(tiny):
    import torch

    model = build_tiny(tiny["config"]).model
    solforge.kernelize(model, winners=[tiny["winners"]["rmsnorm_h64"]], device="cpu", datasets=[tiny["profile"]])
    norm = model.model.norm
    x = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    record = kernels_of(model)
    with torch.no_grad():
        eager = norm(x)
        before = record.calls()["rmsnorm_h64"]
        compiled = torch.compile(norm, fullgraph=True)(x)
    assert record.calls()["rmsnorm_h64"] == before + 1  # the compiled graph called the op, not a copy of its code
    assert torch.equal(compiled, eager)


def test_eager_calls_skip_the_custom_op_dispatch_and_compiled_or_grad_calls_keep_it(tiny, monkeypatch):
    """An eager call without gradients runs the implementation directly; under
    torch.compile the graph calls the registered op (its fake made the trace), and a call
    with an input that requires grad goes through the op, which has no derivative."""
    import torch

    model = build_tiny(tiny["config"]).model
    solforge.kernelize(model, winners=[tiny["winners"]["rmsnorm_h64"]], device="cpu", datasets=[tiny["profile"]])
    norm = model.model.norm
    op = kernels_of(model).dispatchers["rmsnorm_h64"].ops[0]
    x = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    through_op = []
    registered = op.op

    def counting(*args, **kwargs):
        through_op.append(1)
        return registered(*args, **kwargs)

    monkeypatch.setattr(op, "op", counting)
    with torch.no_grad():
        eager = norm(x)
    assert through_op == []  # straight to the implementation
    before = op.calls
    with torch.no_grad():
        compiled = torch.compile(norm, fullgraph=True)(x)
    assert op.calls == before + 1 and torch.equal(compiled, eager)
    monkeypatch.setattr(op, "op", registered)
    x_grad = x.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="(?i)autograd|derivative|backward"):
        norm(x_grad).float().sum().backward()


@pytest.mark.slow
def test_the_whole_kernelized_model_compiles_fullgraph(tiny):
    import torch

    model = build_tiny(tiny["config"]).model
    ids = token_ids(2)
    ref = logits(model, ids)
    solforge.kernelize(model, winners=list(tiny["winners"].values()), device="cpu", datasets=[tiny["profile"]])
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        out = compiled(input_ids=ids, use_cache=False).logits.float()
    assert all(n > 0 for n in kernels_of(model).calls().values())
    assert compare_logits([ref], [out], TOLERANCES["bfloat16"]).max_rel <= TOLERANCES["bfloat16"]


def test_outside_the_tuned_shapes_and_dtype_the_original_runs_with_one_warning(tiny):
    import torch

    defn = tiny["dataset"].definitions["rmsnorm_h64"]
    w = load_winner(tiny["winners"]["rmsnorm_h64"])
    tuned = Winner(defn, w.solution, [{"num_tokens": 32}], w.source, w.dtypes)  # tuned at 32 tokens only
    model = build_tiny(tiny["config"]).model
    norm = model.model.norm
    original = type(norm).forward
    solforge.kernelize(model, winners=[tuned], device="cpu")
    record = kernels_of(model)
    start = record.calls()["rmsnorm_h64"]  # ops are per process: other tests' calls count too
    big = torch.randn(1, 1000, 64).to(torch.bfloat16)  # 1000 tokens > 32 x 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            out1, out2 = norm(big), norm(big)
            half = norm(big.to(torch.float32)[:, :32])  # float32 activations into a bfloat16 kernel
    assert record.calls()["rmsnorm_h64"] == start
    assert torch.equal(out1, original(norm, big)) and torch.equal(out2, out1)
    messages = [str(c.message) for c in caught if issubclass(c.category, KernelFallbackWarning)]
    assert len(messages) == 2  # one per reason, however many calls
    assert "outside the shapes" in messages[0] and "dtype float32" in messages[1]
    assert half.dtype == torch.float32
    with torch.no_grad():
        norm(torch.randn(2, 16, 64).to(torch.bfloat16))  # 32 tokens: tuned, the kernel runs
    assert record.calls()["rmsnorm_h64"] == start + 1


def test_kernelize_time_errors_are_one_line(tiny, tmp_path):
    from runtime_support import seed_winner

    defn = tiny["dataset"].definitions["rmsnorm_h64"]
    model32 = build_tiny(tiny["config"], dtype="float32").model
    with pytest.raises(SpecError, match="dtype float32: winner .* was tuned for bfloat16 only"):
        solforge.kernelize(model32, winners=[tiny["winners"]["rmsnorm_h64"]], device="cpu")
    model = build_tiny(tiny["config"]).model
    # a winner for the GPU (Triton) on a CPU model
    from solforge.knowledge import seeds_for
    from solforge.problems import load_builtin
    from solforge.spec import dump_json

    big, _ = load_builtin("rmsnorm_h4096")
    triton = seeds_for(big, "triton")[0].to_solution(big)
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    (gpu / "solution.json").write_text(dump_json(triton))
    with pytest.raises(SpecError, match="runs on cuda"):
        solforge.kernelize(model, winners=[gpu], device="cpu")
    # a built-in definition whose sizes no module of this model has
    cpu_big = seed_winner(tmp_path / "h4096", big)
    with pytest.raises(SpecError, match="fits no module of this model .*hidden size 64, the definition's is 4096"):
        solforge.kernelize(model, winners=[cpu_big], device="cpu")
    # a run folder without a winner, an unknown definition, an entry point of another signature
    (tmp_path / "run-without-winner").mkdir()
    with pytest.raises(SpecError, match="no winner"):
        solforge.kernelize(model, winners=[tmp_path / "run-without-winner"])
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    sol = load_winner(tiny["winners"]["rmsnorm_h64"]).solution.model_copy(update={"definition": "no_such_definition"})
    (orphan / "solution.json").write_text(dump_json(sol))
    with pytest.raises(SpecError, match="unknown definition 'no_such_definition'"):
        solforge.kernelize(model, winners=[orphan])
    bad_sig = tmp_path / "bad-signature"
    bad_sig.mkdir()
    src = sol.sources[0].content.replace("def run(hidden_states, weight, output)", "def run(x, weight, output)")
    sol2 = sol.model_copy(update={"definition": "rmsnorm_h64",
                                  "sources": [sol.sources[0].model_copy(update={"content": src})]})
    (bad_sig / "solution.json").write_text(dump_json(sol2))
    with pytest.raises(SpecError, match="signature mismatch"):
        solforge.kernelize(model, winners=[bad_sig], datasets=[tiny["profile"]])
    assert kernels_of(model) is None  # nothing was half-applied


def test_use_kernels_and_apply(tiny):
    import torch

    model = build_tiny(tiny["config"]).model
    w = tiny["winners"]["rmsnorm_h64"]

    @solforge.apply("rmsnorm_h64", datasets=[tiny["profile"]])
    def my_rmsnorm(hidden_states, weight):
        x = hidden_states.float()
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight.float()).to(hidden_states.dtype)

    x = torch.randn(8, 64).to(torch.bfloat16)
    weight = torch.randn(64).to(torch.bfloat16)
    plain = my_rmsnorm(x, weight)  # no winner active: the function itself
    with solforge.use_kernels(model, winners=[w], datasets=[tiny["profile"]]) as record:
        start = record.calls()["rmsnorm_h64"]
        served = my_rmsnorm(x, weight)
        assert record.calls()["rmsnorm_h64"] == start + 1  # apply's call went to the op (one call, the model not run)
        assert model.model.norm.__dict__.get("forward") is not None
    assert "forward" not in model.model.norm.__dict__  # the original forward is back after the block
    assert torch.allclose(served.float(), plain.float(), atol=1.6e-2, rtol=1.6e-2)
    with pytest.raises(SpecError, match=r"signature mismatch .* parameters \(x, w\), expected \(hidden_states, weight\)"):
        solforge.apply("rmsnorm_h64", datasets=[tiny["profile"]])(lambda x, w: x)
    with pytest.raises(SpecError, match="unknown definition 'rmsnorm_h65'"):
        solforge.apply("rmsnorm_h65")
