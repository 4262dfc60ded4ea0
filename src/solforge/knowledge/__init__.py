"""The knowledge base of the evolution engine: seed kernels, the optimization playbook, and a
full-text index over both.

    from solforge.knowledge import seeds_for, search_knowledge
    seeds = seeds_for(definition, "numba")           # the seeds that implement a definition
    solution = seeds[0].to_solution(definition, {"PARALLEL": True})
    hits = search_knowledge("online softmax", kind="playbook")

- `seeds/<language>/*.py`: parameterized solution sources (Triton for CUDA, numba for the
  CPU); `SeedKernel` reads their metadata without importing them, rewrites their
  `PARAMS` literal (`with_params`) and turns them into Solutions. The file contract is in
  `solforge.knowledge.seed_kernels`' docstring.
- `playbook/*.md`: one technique per file (coalescing, fusion, online softmax, tiling,
  pipelining, persistent kernels, split-K, Hopper TMA/WGMMA, occupancy, CPU kernels),
  each with when it pays and how to tell from a profile.
- `search_knowledge`: SQLite FTS5 over both, cached in the user cache directory.
"""

from __future__ import annotations

from solforge.knowledge.index import (
    IndexInfo,
    KnowledgeHit,
    KnowledgeKind,
    PlaybookSection,
    build_index,
    content_hash,
    default_index_path,
    ensure_index,
    playbook_paths,
    playbook_sections,
    search_knowledge,
)
from solforge.knowledge.seed_kernels import (
    SEED_AUTHOR,
    SEED_LANGUAGES,
    ParamValue,
    SeedKernel,
    load_seed,
    load_seeds,
    params_digest,
    read_params,
    reference_constants,
    seeds_for,
    shipped_seed_paths,
)

__all__ = [
    "SEED_AUTHOR",
    "SEED_LANGUAGES",
    "IndexInfo",
    "KnowledgeHit",
    "KnowledgeKind",
    "ParamValue",
    "PlaybookSection",
    "SeedKernel",
    "build_index",
    "content_hash",
    "default_index_path",
    "ensure_index",
    "load_seed",
    "load_seeds",
    "params_digest",
    "playbook_paths",
    "playbook_sections",
    "read_params",
    "reference_constants",
    "search_knowledge",
    "seeds_for",
    "shipped_seed_paths",
]
