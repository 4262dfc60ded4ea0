"""The import direction of the package: data flows one way (DESIGN.md, "The pipeline"), and
so do imports.

Every `import` and `from ... import` under src/solforge is read from the source (AST):
module level, inside functions (lazy imports), and under `if TYPE_CHECKING:` alike. A
stage may import its own package and any stage before it in

    spec -> hardware -> roofline -> problems -> bench -> knowledge -> search -> agent
         -> runtime / profile / report -> cli

and nothing after it; runtime, profile and report share one rank (they may use one
another, but not in a cycle). Infrastructure, `solforge/__init__.py`, `solforge/cache.py`
and `solforge/plugins.py`, may be imported from anywhere, and itself imports nothing but
`spec`, the first stage. Beyond the order, no cycle is allowed between stages (packages).
Cycles between the modules of one package are that package's business (a plugin
registry and its plugins import each other). Package data (the seed kernels, the problem suite) is not part of the graph:
those files are read as data, never imported by solforge.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ORDER: tuple[tuple[str, ...], ...] = (
    ("spec",), ("hardware",), ("roofline",), ("problems",), ("bench",), ("knowledge",), ("search",), ("agent",),
    ("runtime", "profile", "report"), ("cli",),
)
RANK = {stage: i for i, stages in enumerate(ORDER) for stage in stages}
INFRASTRUCTURE = {"solforge", "solforge.cache", "solforge.plugins"}
DATA_DIRS = ({"knowledge", "seeds"}, {"problems", "data"})  # package data: read, never imported


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__)."""
    out = {}
    for path in sorted((SRC / "solforge").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if any(data <= set(parts) for data in DATA_DIRS):
            continue
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _imports_in(source: str, package: str, known: dict | None = None) -> list[tuple[int, str]]:
    """(line, imported solforge module) for every import in `source`, a module of `package`,
    lazy ones included."""
    known = MODULES if known is None else known
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "solforge"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "solforge":
                continue
            for alias in node.names:  # `from solforge import search` imports the subpackage
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if sub in known else module))
    return found


def _imports(name: str) -> list[tuple[int, str]]:
    path, is_package = MODULES[name]
    return _imports_in(path.read_text(), name if is_package else name.rpartition(".")[0])


def _stage(module: str) -> str | None:
    """The pipeline stage of a solforge module; None for infrastructure."""
    if module in INFRASTRUCTURE:
        return None
    return module.split(".")[1]


def _where(name: str, line: int) -> str:
    return f"{MODULES[name][0].relative_to(SRC.parent)}:{line}"


def test_every_stage_is_in_the_order():
    stages = {_stage(m) for m in MODULES} - {None}
    assert stages <= set(RANK), f"packages missing from the pipeline order: {sorted(stages - set(RANK))}"


def test_imports_follow_the_pipeline_order():
    backward = []
    for name in MODULES:
        importer = _stage(name)
        for line, imported in _imports(name):
            target = _stage(imported)
            if importer is None:  # infrastructure imports nothing but the first stage
                if target is not None and RANK[target] > 0:
                    backward.append(f"{_where(name, line)}: infrastructure {name} imports {imported}")
            elif target is not None and RANK[target] > RANK[importer]:
                backward.append(f"{_where(name, line)}: {importer} imports {imported} ({target} comes after it)")
    assert not backward, "imports against spec -> ... -> cli:\n" + "\n".join(backward)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_cycle_between_stages():
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        importer = _stage(name)
        for _, imported in _imports(name):
            target = _stage(imported)
            if importer is not None and target is not None and target != importer:
                edges.setdefault(importer, set()).add(target)
    assert _cycles(edges) == []


def test_the_check_sees_lazy_and_type_checking_imports():
    """The walk finds imports inside functions and TYPE_CHECKING blocks: it would have caught
    the search -> agent import that the controller once made inside a method."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from solforge.report import x\n"
        "def f():\n    from solforge.agent import AgentOperator\n    import solforge.cli.evolve\n"
        "from . import operators\n"
    )
    found = sorted(m for _, m in _imports_in(source, "solforge.search"))
    assert found == ["solforge.agent", "solforge.cli.evolve", "solforge.report", "solforge.search.operators"]
    assert RANK[_stage("solforge.agent")] > RANK[_stage("solforge.search.controller")]
