"""Fixtures of the runtime tests: one profiled tiny Llama (its dataset of new definitions) and
seed winners for its RMSNorm, fused add + RMSNorm and SiLU-and-mul, shared by the module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runtime_support import BATCH, SEQ, seed_winner, write_tiny_config


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("solforge-cache")
    old = os.environ.get("SOLFORGE_CACHE_DIR")
    os.environ["SOLFORGE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SOLFORGE_CACHE_DIR", None)
    else:
        os.environ["SOLFORGE_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, cache_dir) -> dict:
    """{'config': path, 'profile': folder (a dataset), 'result': ProfileResult, 'winners': {definition: folder}}."""
    from solforge.profile import profile_model
    from solforge.spec import load_dataset

    root = tmp_path_factory.mktemp("tiny")
    config = write_tiny_config(root)
    prof = root / "profile"
    result = profile_model(str(config), batch=BATCH, seq_len=SEQ, iterations=2, out=prof)
    ds = load_dataset(prof)
    winners = {name: seed_winner(root / "winners" / name, ds.definitions[name])
               for name in ("rmsnorm_h64", "fused_add_rmsnorm_h64", "silu_and_mul_i128")}
    return {"config": config, "profile": prof, "result": result, "winners": winners, "dataset": ds}

