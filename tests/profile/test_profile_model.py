"""solforge profile on a tiny Llama built from its config: the candidates, their shares, the
definitions they map to (built in where one fits, new otherwise), and profile.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("solforge-cache")
    old = os.environ.get("SOLFORGE_CACHE_DIR")
    os.environ["SOLFORGE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SOLFORGE_CACHE_DIR", None)
    else:
        os.environ["SOLFORGE_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def profiled(tmp_path_factory, cache_dir):
    from solforge.profile import profile_model

    root = tmp_path_factory.mktemp("prof")
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = root / "out"
    return profile_model(str(config), batch=2, seq_len=16, iterations=2, out=out), out


def test_the_tiny_llama_profile_finds_norms_activation_and_projections(profiled):
    result, out = profiled
    rows = {r.kind: r for r in result.rows}
    assert {"rmsnorm", "fused_add_rmsnorm", "silu_and_mul", "gemm", "attention", "rope"} <= set(rows)
    shares = [r.share for r in result.rows]
    assert all(s > 0 for s in shares) and sum(shares) <= 1.0
    assert result.rows == sorted(result.rows, key=lambda r: -r.measured_ms)
    for r in result.rows:
        assert r.amdahl_ceiling == pytest.approx(1 / (1 - r.share))
    # 32 tokens per forward; the layers' input_layernorm and the final norm alone, the
    # post_attention_layernorm of each layer with its residual add
    assert rows["rmsnorm"].calls == [{"axes": {"num_tokens": 32}, "count": 3}]
    assert rows["fused_add_rmsnorm"].calls == [{"axes": {"num_tokens": 32}, "count": 2}]
    assert rows["silu_and_mul"].calls == [{"axes": {"num_tokens": 32}, "count": 2}]
    gemm = {tuple(sorted(c["axes"].items())): c["count"] for c in rows["gemm"].calls}
    assert gemm[(("K", 64), ("M", 32), ("N", 64))] == 4  # q_proj and o_proj of both layers
    assert gemm[(("K", 64), ("M", 32), ("N", 256))] == 1  # lm_head
    assert rows["gemm"].definition == "gemm_bf16_llama31_8b" and rows["gemm"].source == "builtin"
    assert rows["rmsnorm"].definition == "rmsnorm_h64" and rows["rmsnorm"].source == "new"
    assert all(r.sol_ms is not None and 0 < r.sol_ms for r in result.rows)
    assert all(r.gain_at_sol is None or 1.0 <= r.gain_at_sol <= r.amdahl_ceiling + 1e-9 for r in result.rows)
    data = json.loads((out / "profile.json").read_text())
    assert [r["definition"] for r in data["rows"]] == [r.definition for r in result.rows]


def test_new_definitions_are_a_dataset_the_search_can_start_from(profiled):
    from solforge.knowledge import seeds_for
    from solforge.spec import load_dataset

    _, out = profiled
    ds = load_dataset(out)
    norm = ds.definitions["rmsnorm_h64"]
    assert norm.axes["hidden_size"].value == 64 and "eps = 1e-05" in norm.reference
    assert [s.name for s in seeds_for(norm, "numba")] == ["numba/rmsnorm_rows", "numba/rmsnorm_tiled"]
    assert seeds_for(ds.definitions["silu_and_mul_i128"], "numba")
    wls = ds.workloads["rmsnorm_h64"]
    assert {w.axes["num_tokens"] for w in wls if not w.smoke and not w.held_out} == {32}
    assert {w.axes["num_tokens"] for w in wls if w.smoke} == {1, 7, 64}
    assert any(w.held_out for w in wls)


def test_a_model_with_a_suite_shape_maps_to_the_built_in_definition_and_eps_decides():
    from solforge.profile.candidates import Call, Candidate, map_candidates

    def norm(hidden, eps):
        return Candidate("rmsnorm", "RMSNorm", "bfloat16", {"hidden_size": hidden}, {"eps": eps},
                         calls=[Call({"num_tokens": 128}, 1)])

    llama, qwen, qwen_eps5 = norm(4096, 1e-5), norm(3584, 1e-6), norm(3584, 1e-5)
    new_defs, _ = map_candidates([llama, qwen, qwen_eps5], "my-model", "prefill")
    assert (llama.definition, llama.source) == ("rmsnorm_h4096", "builtin")
    assert (qwen.definition, qwen.source) == ("rmsnorm_h3584", "builtin")
    # same hidden size as Qwen's, but another eps: not the suite's definition
    assert qwen_eps5.source == "new" and qwen_eps5.definition == "rmsnorm_h3584_my-model"
    assert "eps = 1e-05" in new_defs["rmsnorm_h3584_my-model"].reference
    f32 = Candidate("rmsnorm", "RMSNorm", "float32", {"hidden_size": 4096}, {"eps": 1e-5}, calls=[Call({"num_tokens": 4}, 1)])
    defs, _ = map_candidates([f32], "m", "prefill")
    assert f32.definition == "rmsnorm_h4096_float32" and defs[f32.definition].inputs["weight"].dtype.value == "float32"


def test_shipped_configs_build_as_transformers_configs():
    from transformers import AutoConfig

    from solforge.profile.targets import read_config

    expected = {"meta-llama/Llama-3.1-8B": (4096, 14336, 32, 8, 1e-5), "Qwen/Qwen2.5-7B": (3584, 18944, 28, 4, 1e-6),
                "mixtral-8x7b": (4096, 14336, 32, 8, 1e-5)}
    for name, (hidden, inter, heads, kv, eps) in expected.items():
        data, where = read_config(name)
        cfg = AutoConfig.for_model(data.pop("model_type"), **data)
        assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                cfg.rms_norm_eps) == (hidden, inter, heads, kv, eps), where


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solforge.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_bad_targets_are_one_line_and_write_nothing(tmp_path, cache_dir):
    no_arch = tmp_path / "no-arch.json"
    no_arch.write_text(json.dumps({k: v for k, v in TINY.items() if k != "architectures"}))
    factory = tmp_path / "factory.py"
    factory.write_text("def make():\n    raise RuntimeError('no weights here')\n")
    cases = {
        "nosuch-org/nosuch-model": "not in the local Hugging Face cache",
        str(no_arch): "architectures: missing",
        f"{factory}:make": "the factory raised RuntimeError: no weights here",
        f"{factory}:other": "has no function 'other'",
    }
    for target, message in cases.items():
        out = tmp_path / "out"
        proc = _cli("profile", target, "--out", str(out), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
        assert not out.exists()


def test_a_factory_target_is_profiled(tmp_path, cache_dir):
    from solforge.profile import profile_model

    factory = tmp_path / "mlp.py"
    factory.write_text(
        "import torch\n\n"
        "def make():\n"
        "    model = torch.nn.Sequential(torch.nn.Linear(32, 64, bias=False), torch.nn.ReLU(), torch.nn.Linear(64, 8, bias=False))\n"
        "    return model.to(torch.bfloat16), (torch.randn(4, 32).to(torch.bfloat16),)\n")
    result = profile_model(f"{factory}:make", iterations=2)
    gemm = next(r for r in result.rows if r.kind == "gemm")
    assert sorted(tuple(sorted(c["axes"].items())) for c in gemm.calls) == [
        (("K", 32), ("M", 4), ("N", 64)), (("K", 64), ("M", 4), ("N", 8))]
