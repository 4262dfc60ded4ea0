"""Search strategies: which evaluated candidates are kept, and which become parents.

- `lineage` (AVO, Agentic Variation Operators): one line of committed versions. A
  candidate is committed when it is correct and at least as fast (fitness at least the
  best so far); operators build on the latest version.
- `best-of-n`: N independent samples of the same operators, no selection (the
  baseline a search must beat);
- `map-elites` (Mouret & Clune 2015, with islands as in FunSearch and OpenEvolve):
  several islands, each a grid of cells over kernel descriptors; a candidate replaces
  the elite of its cell on its island when fitter. Every `migrate_every` evaluations
  each island's best is copied to the next island of the ring.

Descriptors come from the code, its declared parameters and, when the run
cross-compiles for a GPU target, its compile report, binned by fixed edges (never
character counts): the kernel family (algorithm, fusion), the tile size, the warps per
program, the software-pipelining depth, the language's own features of the source
(`LanguagePlugin.descriptors`: tensor-core use and persistence for Triton, prange and
fastmath for numba), and the registers per thread and shared memory per block that
ptxas reports (-1 where nothing was compiled).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from solforge.search.context import EvaluatedCandidate
from solforge.spec import Solution

if TYPE_CHECKING:
    from solforge.spec.trace import CompileReport

# Fixed bin edges (upper bounds, inclusive); the last bin is open.
TILE_EDGES = (64, 256, 1024, 4096)
WARP_EDGES = (1, 2, 4, 8)
STAGE_EDGES = (1, 2, 3)
# Registers per thread: 32 and 64 allow full occupancy on sm_80/sm_90 (65536 registers
# per SM / 2048 threads = 32; 64 halves it), 128 quarters it, 255 is the per-thread
# limit (CUDA C Programming Guide, "Compute Capabilities", table of technical specifications).
REGISTER_EDGES = (32, 64, 128, 255)
# Shared memory per block, bytes: 16 KiB, the 48 KiB static limit, 100 KiB, and the
# largest opt-in block on sm_90 (227 KiB; same table).
SHARED_MEMORY_EDGES = (16 << 10, 48 << 10, 100 << 10, 227 << 10)


def _bin(value: float | None, edges: tuple[int, ...]) -> int:
    if value is None:
        return -1
    return next((i for i, edge in enumerate(edges) if value <= edge), len(edges))


def _tile_elements(params: dict[str, Any]) -> int | None:
    """Elements per program tile: the product of the BLOCK* (and ROWS*) parameters."""
    dims = [int(v) for k, v in params.items() if k.upper().startswith(("BLOCK", "ROWS", "TILE", "CHUNK"))
            and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return math.prod(dims) if dims else None


def descriptor(family: str, params: dict[str, Any], solution: Solution,
               reports: Sequence[CompileReport] = ()) -> tuple:  # fmt: skip
    """The map-elites cell of a kernel: (family, tile bin, warps bin, stages bin, the
    language plugin's descriptors in name order, registers bin, shared-memory bin). The
    last two are -1 without `reports` (the kernel's compile reports for the run's target);
    with several kernels, the largest figure counts."""
    from solforge.bench.languages import plugin_for

    source = "\n".join(s.content for s in solution.sources)
    warps = params.get("num_warps")
    stages = params.get("num_stages")
    features = plugin_for(solution.spec.language).descriptors(source)
    registers = max((r.registers_per_thread for r in reports), default=None)
    shared = max((r.static_shared_memory_bytes + r.dynamic_shared_memory_bytes for r in reports), default=None)
    return (
        family,
        _bin(_tile_elements(params), TILE_EDGES),
        _bin(warps if isinstance(warps, (int, float)) else None, WARP_EDGES),
        _bin(stages if isinstance(stages, (int, float)) else None, STAGE_EDGES),
        *(features[k] for k in sorted(features)),
        _bin(registers, REGISTER_EDGES),
        _bin(shared, SHARED_MEMORY_EDGES),
    )


@dataclass
class Decision:
    accepted: bool  # kept by the strategy (committed, or placed in a cell)
    new_best: bool  # better than every candidate before it
    reason: str


class LineageStrategy:
    """One line of committed versions (AVO)."""

    name = "lineage"

    def __init__(self) -> None:
        self.versions: list[EvaluatedCandidate] = []
        self._best: EvaluatedCandidate | None = None

    def best(self) -> EvaluatedCandidate | None:
        return self._best

    def elites(self) -> list[EvaluatedCandidate]:
        return sorted(self.versions, key=lambda e: -e.fitness)

    def select(self, rng: random.Random) -> tuple[int, list[EvaluatedCandidate]]:
        """(island, parents): the latest version first, then the fittest."""
        return 0, ([self.versions[-1]] + self.elites()[:3] if self.versions else [])

    def would_improve(self, elite: EvaluatedCandidate) -> bool:
        return elite.fitness > 0 and (self._best is None or elite.fitness > self._best.fitness)

    def consider(self, elite: EvaluatedCandidate, cell: tuple, island: int = 0) -> Decision:
        if elite.fitness <= 0:
            return Decision(False, False, "failed a search workload")
        if self._best is not None and elite.fitness < self._best.fitness:
            return Decision(False, False, f"fitness {elite.fitness:.4f} below the best {self._best.fitness:.4f}")
        new_best = self._best is None or elite.fitness > self._best.fitness
        self.versions.append(elite)
        self._best = elite
        return Decision(True, new_best, f"committed as version {len(self.versions)}")

    def restore(self, versions: list[EvaluatedCandidate]) -> None:
        for v in versions:
            self.versions.append(v)
            if self._best is None or v.fitness >= self._best.fitness:
                self._best = v


@dataclass
class _Island:
    cells: dict[tuple, EvaluatedCandidate] = field(default_factory=dict)

    def best(self) -> EvaluatedCandidate | None:
        return max(self.cells.values(), key=lambda e: e.fitness, default=None)


class MapElitesStrategy:
    """Islands of descriptor grids with ring migration."""

    name = "map-elites"

    def __init__(self, islands: int = 4, migrate_every: int = 8) -> None:
        self.islands = [_Island() for _ in range(islands)]
        self.migrate_every = migrate_every
        self.current = 0  # the island whose turn it is to breed
        self._seen = 0
        self._cell_of: dict[int, tuple] = {}

    def best(self) -> EvaluatedCandidate | None:
        return max((i.best() for i in self.islands if i.best()), key=lambda e: e.fitness, default=None)

    def elites(self) -> list[EvaluatedCandidate]:
        everyone = {e.candidate_id: e for i in self.islands for e in i.cells.values()}
        return sorted(everyone.values(), key=lambda e: -e.fitness)

    def select(self, rng: random.Random) -> tuple[int, list[EvaluatedCandidate]]:
        """(island, parents): islands take turns; parents by tournaments of two on that island."""
        island = self.current
        self.current = (self.current + 1) % len(self.islands)
        elites = sorted(self.islands[island].cells.values(), key=lambda e: -e.fitness) or self.elites()
        if not elites:
            return island, []
        # fitter parents more often, every elite sometimes
        return island, [max(rng.sample(elites, min(2, len(elites))), key=lambda e: e.fitness) for _ in range(3)]

    def would_improve(self, elite: EvaluatedCandidate) -> bool:
        best = self.best()
        return elite.fitness > 0 and (best is None or elite.fitness > best.fitness)

    def consider(self, elite: EvaluatedCandidate, cell: tuple, island: int = 0) -> Decision:
        island = self.islands[island % len(self.islands)]
        self._seen += 1
        if elite.fitness <= 0:
            return Decision(False, False, "failed a search workload")
        best = self.best()
        new_best = best is None or elite.fitness > best.fitness
        held = island.cells.get(cell)
        if held is not None and held.fitness >= elite.fitness:
            verdict = Decision(False, False, f"cell {cell} holds a fitter elite #{held.candidate_id}")
        else:
            island.cells[cell] = elite
            self._cell_of[elite.candidate_id] = cell
            verdict = Decision(True, new_best, f"elite of cell {cell} on island {self.islands.index(island)}")
        if self._seen % self.migrate_every == 0:
            self.migrate()
        return verdict

    def migrate(self) -> list[tuple[int, int]]:
        """Copy each island's best into the next island (ring); returns (island, candidate) moved."""
        moved = []
        bests = [i.best() for i in self.islands]
        for k, b in enumerate(bests):
            if b is None:
                continue
            target = self.islands[(k + 1) % len(self.islands)]
            cell = self._cell_of.get(b.candidate_id)
            if cell is not None and (cell not in target.cells or target.cells[cell].fitness < b.fitness):
                target.cells[cell] = b
                moved.append(((k + 1) % len(self.islands), b.candidate_id))
        return moved

    def restore_elite(self, island: int, cell: tuple, elite: EvaluatedCandidate) -> None:
        self.islands[island % len(self.islands)].cells[cell] = elite
        self._cell_of[elite.candidate_id] = cell


class BestOfNStrategy:
    """Best-of-N sampling, the baseline a search must beat (OpenEvolve #100): every
    proposal starts from the same place, the first candidate that passed, and nothing
    learned since reaches the operators (the controller gives them no trial history, and
    draws them with fixed weights: its supervisor neither adapts nor redirects), so the N
    candidates are independent samples of the same operators; the best is kept and never
    built on."""

    name = "best-of-n"

    def __init__(self) -> None:
        self._start: EvaluatedCandidate | None = None
        self._best: EvaluatedCandidate | None = None

    def best(self) -> EvaluatedCandidate | None:
        return self._best

    def elites(self) -> list[EvaluatedCandidate]:
        return [self._start] if self._start is not None else []

    def select(self, rng: random.Random) -> tuple[int, list[EvaluatedCandidate]]:
        return 0, self.elites()

    def would_improve(self, elite: EvaluatedCandidate) -> bool:
        return elite.fitness > 0 and (self._best is None or elite.fitness > self._best.fitness)

    def consider(self, elite: EvaluatedCandidate, cell: tuple, island: int = 0) -> Decision:
        if elite.fitness <= 0:
            return Decision(False, False, "failed a search workload")
        if self._start is None:
            self._start = elite
        new_best = self.would_improve(elite)
        if new_best:
            self._best = elite
            return Decision(True, True, "the best sample so far")
        return Decision(False, False, f"fitness {elite.fitness:.4f} below the best sample {self._best.fitness:.4f}")

    def restore(self, versions: list[EvaluatedCandidate]) -> None:
        for v in versions:
            if self._start is None:
                self._start = v
            if self._best is None or v.fitness >= self._best.fitness:
                self._best = v


def make_strategy(name: str) -> LineageStrategy | MapElitesStrategy | BestOfNStrategy:
    """The named strategy. Raises ValueError for an unknown name."""
    if name == "lineage":
        return LineageStrategy()
    if name == "map-elites":
        return MapElitesStrategy()
    if name == "best-of-n":
        return BestOfNStrategy()
    raise ValueError(f"unknown strategy '{name}' (expected lineage, map-elites or best-of-n)")
