"""Every Triton seed compiles for sm_90a and sm_100a on this CPU machine, at the
specialization of every search workload of every built-in definition it serves, at its
default parameters, without a single spilled byte.

The always-on path compiles each seed at its first definition for sm_90a; the `slow`
path covers every (definition, seed) pair for both targets. Specializations repeat across
definitions and workloads (the same kernel source at the same argument types): each one
is compiled once per test session (`cross_compile(isolate=False)` caches by Triton's
source hash and specialization).
"""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("triton")

from solforge.bench.crosscompile import CrossCompileError, cross_compile  # noqa: E402
from solforge.knowledge import seeds_for  # noqa: E402
from solforge.problems import builtin_names, load_builtin, select_workloads  # noqa: E402


@functools.cache
def _cases() -> tuple[tuple[str, str], ...]:
    """(definition, seed name) for every built-in definition and Triton seed that serves it."""
    return tuple((name, seed.name) for name in builtin_names() for seed in seeds_for(load_builtin(name)[0], "triton"))


def _first_definition_of_each_seed() -> list[tuple[str, str]]:
    first: dict[str, str] = {}
    for definition, seed in _cases():
        first.setdefault(seed, definition)
    return [(definition, seed) for seed, definition in sorted(first.items())]


@functools.cache
def _compile(definition_name: str, seed_name: str, target: str):
    definition, workloads = load_builtin(definition_name)
    seed = next(s for s in seeds_for(definition, "triton") if s.name == seed_name)
    search = select_workloads(workloads, "search")
    return search, cross_compile(seed.to_solution(definition), definition, search, target, isolate=False)


def _check(definition_name: str, seed_name: str, target: str) -> None:
    try:
        search, reports = _compile(definition_name, seed_name, target)
    except CrossCompileError as exc:
        pytest.fail(f"{seed_name} on {definition_name} does not compile for {target}: {exc}")
    uncovered = [w.uuid for w in search if not any(w.uuid in r.workloads for r in reports)]
    assert not uncovered, f"{seed_name} on {definition_name}: no kernel compiled for workloads {uncovered}"
    spills = [f"{r.kernel} ({r.spill_store_bytes} B stored, {r.spill_load_bytes} B loaded) on {r.workloads[0]}"
              for r in reports if r.spill_bytes]  # fmt: skip
    assert not spills, f"{seed_name} on {definition_name} spills on {target}: {'; '.join(spills)}"
    for r in reports:
        assert r.target == target and r.occupancy.blocks_per_sm >= 1 and r.registers_per_thread > 0


def test_every_triton_seed_serves_a_definition():
    from solforge.knowledge import load_seeds

    served = {seed for _, seed in _cases()}
    assert served == {s.name for s in load_seeds("triton")}


@pytest.mark.parametrize(("definition", "seed"), _first_definition_of_each_seed(), ids=lambda x: x)
def test_seed_compiles_for_sm_90a_without_spills(definition, seed):
    _check(definition, seed, "sm_90a")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["sm_90a", "sm_100a"])
@pytest.mark.parametrize(("definition", "seed"), _cases(), ids=lambda x: x)
def test_seed_compiles_on_every_definition_it_serves(definition, seed, target):
    _check(definition, seed, target)


def test_gemm_stages_are_fitted_to_the_targets_shared_memory_as_on_the_gpu():
    # 5 stages of 128x128 + 256x128 bf16 tiles would need 480 KB; the seed fits them to the
    # target's 227 KB through Triton's driver API, as it does on an H100
    definition, workloads = load_builtin("gemm_bf16_llama31_8b")
    seed = next(s for s in seeds_for(definition, "triton") if s.stem == "gemm_tiled")
    solution = seed.to_solution(definition, {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "num_stages": 5})
    reports = cross_compile(solution, definition, select_workloads(workloads, "search")[:1], "sm_90a", isolate=False)
    assert [(r.num_stages, r.dynamic_shared_memory_bytes) for r in reports] == [(2, 2 * (128 + 256) * 128 * 2)]
