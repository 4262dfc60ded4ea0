"""Helpers shared by the agent's tests: the loopback LLM servers (servers.py), the rmsnorm_h4096
problem on CPU-sized workloads with one held-out workload, a slow-but-correct PyTorch parent
solution, and the search context an operator is handed (never with the held-out workload).

Named `agent_support` rather than `support`: under pytest's default "prepend" import mode
every test folder without an `__init__.py` shares one module namespace, so a `support.py` in
two folders would be one module to whichever test imports it second.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Iterable
from pathlib import Path

from solforge.problems import load_builtin
from solforge.search import EvaluatedCandidate, LineageStep, NoteRecord, SearchContext
from solforge.spec import Definition, Solution, SourceFile, Trace, Workload

HELD_OUT_UUID, HELD_OUT_LABEL = "rmsnorm_h4096-secret-t5", "secret holdout t=5"
# A correct RMSNorm with room to improve (1/sqrt where rsqrt would do): the parent the agents edit.
SLOW = """import torch


def run(hidden_states, weight):
    x = hidden_states.to(torch.float32)
    mean_square = (x * x).sum(dim=-1, keepdim=True) / x.shape[-1]
    inv_rms = 1.0 / torch.sqrt(mean_square + 1e-5)
    return (x * inv_rms * weight.to(torch.float32)).to(hidden_states.dtype)
"""


def _load_sibling(name: str):
    """tests/agent/<name>.py as a module, registered under a prefixed key so that its
    generic name cannot collide with another test folder's module."""
    key = f"_solforge_agent_test_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


servers = _load_sibling("servers")


def rmsnorm_workload(uuid: str, tokens: int, label: str, held_out: bool = False) -> Workload:
    """An rmsnorm_h4096 workload, CPU-sized (written here, so the tests do not follow edits of the suite)."""
    return Workload(uuid=uuid, axes={"num_tokens": tokens},
                    solforge={"smoke": True, "held_out": held_out, "label": label})  # fmt: skip


def rmsnorm_problem(tokens: Iterable[int], held_out: bool) -> tuple[Definition, list[Workload]]:
    """rmsnorm_h4096 and a search workload `agent-test-t<n>` ("smoke t=<n>") per entry of
    `tokens`, then, with `held_out`, the held-out workload HELD_OUT_UUID (5 tokens)."""
    definition, _ = load_builtin("rmsnorm_h4096")
    workloads = [rmsnorm_workload(f"agent-test-t{n}", n, f"smoke t={n}") for n in tokens]
    if held_out:
        workloads.append(rmsnorm_workload(HELD_OUT_UUID, 5, HELD_OUT_LABEL, held_out=True))
    return definition, workloads


def pytorch_solution(definition: Definition, content: str, name: str) -> Solution:
    """A returning-style PyTorch solution of one file, kernel.py, entry point kernel.py::run."""
    return Solution.model_validate({
        "name": name, "definition": definition.name,
        "spec": {"language": "pytorch", "entry_point": "kernel.py::run", "destination_passing_style": False},
        "sources": [SourceFile(path="kernel.py", content=content)],
    })  # fmt: skip


PARENT_ID = 1


def slow_parent(definition: Definition) -> EvaluatedCandidate:
    """SLOW as an evaluated candidate #1 of family torch_rows (fitness 0.5)."""
    return EvaluatedCandidate(PARENT_ID, "torch_rows", {}, 0.5, pytorch_solution(definition, SLOW, "rmsnorm-torch"))


def search_workloads(workloads: Iterable[Workload]) -> list[Workload]:
    return [w for w in workloads if not w.held_out]


def search_context(definition: Definition, workloads: Iterable[Workload], direction: str | None = None,
                   parent_traces: tuple[Trace, ...] = (), lineage: tuple[LineageStep, ...] = (),
                   notes: tuple[NoteRecord, ...] = (), run_cost_usd: float = 0.0) -> SearchContext:
    """The context of one step from the SLOW parent, over the search workloads of `workloads`, seeded RNG."""
    return SearchContext(definition=definition, workloads=tuple(search_workloads(workloads)), seed_kernels={},
                         parents=(slow_parent(definition),), elites=(), tried_families={}, rng=random.Random(0),
                         direction=direction, parent_traces=parent_traces, lineage=lineage, notes=notes,
                         run_cost_usd=run_cost_usd)  # fmt: skip
