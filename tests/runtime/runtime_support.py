"""Shared helpers of the runtime tests: a tiny Llama config, its profile folder, and honest
winners made from the knowledge base's numba seed kernels (SeedKernel.to_solution)."""

from __future__ import annotations

import json
from pathlib import Path

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}
BATCH, SEQ = 2, 16  # 32 tokens per forward


def write_tiny_config(folder: Path, **changes) -> Path:
    path = folder / "tiny-llama.json"
    path.write_text(json.dumps({**TINY_LLAMA, **changes}))
    return path


def seed_winner(folder: Path, definition, params: dict | None = None, traces: list | None = None) -> Path:
    """A winner folder (solution.json + definition.json) holding the numba seed of `definition`."""
    from solforge.knowledge import seeds_for
    from solforge.spec import dump_json, write_jsonl

    seed = seeds_for(definition, "numba")[0]
    solution = seed.to_solution(definition, params or {})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "solution.json").write_text(dump_json(solution) + "\n")
    (folder / "definition.json").write_text(dump_json(definition) + "\n")
    if traces:
        write_jsonl(folder / "traces.jsonl", traces)
    return folder


def build_tiny(config: Path, dtype: str = "bfloat16"):
    """The tiny Llama with random weights (seeded: every build is the same model)."""
    from solforge.profile.targets import load_target

    return load_target(str(config), dtype=dtype, batch=BATCH, seq_len=SEQ)


def token_ids(seed: int = 0, batch: int = BATCH, seq: int = SEQ):
    import torch

    return torch.randint(0, TINY_LLAMA["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits.float()
