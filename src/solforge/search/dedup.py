"""Dedup keys: two candidates that would run the same code are evaluated once.

The archive refuses an exact duplicate (same sources: `archive_schema.source_hash`) and
a repeated parameter point (`params_hash`). Two more keys catch what those miss
(tinygrad's BEAM search drops candidates by what they compile to):

- `normalized_hash(solution)`: the sources after normalization. Python files are
  parsed and dumped by `ast` without comments, docstrings, formatting, or the names
  of local variables (each function's locals are renamed in order of first
  appearance; arguments keep their names, since callers may pass them by keyword);
  CUDA C++ loses its comments and whitespace. An agent's edit that only renames or
  reformats is then a duplicate. Cheap (milliseconds), so it runs for every candidate.
- `numba_ir_hash(solution, definition, workload)`: numba's optimized LLVM IR of every
  `@njit` function the solution compiles when called once on the workload's inputs,
  with names that depend on the module or the process stripped. This needs the
  kernels compiled (numba compiles at the first call, for the argument types), so it
  runs the solution's code, in a child process under the harness's scrubbed
  environment and a wall-clock limit (`python -m solforge.search.dedup DIR`); it costs
  about one compile (0.7-1.5 s on this project's CPU machines). The controller computes
  it only for candidates that are not a seed's parameter point: for those, the points
  of rmsnorm_rows' 96-point space measured 96 distinct IRs (docs/measurements.md), so
  the compile would be spent for nothing.
- Triton: the cubin of a candidate is what `bench.crosscompile` makes for a `--target`
  run; its report carries no hash of it yet (a harness change asked of the lead), so a
  Triton candidate is deduplicated by its normalized source.

A key that cannot be computed (a syntax error, a child that fails) is None: the
candidate is then simply evaluated, and the harness says what is wrong with it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from solforge.spec import Definition, Language, Solution, Workload, dump_json

IR_TIMEOUT_S = 120.0


class _Locals(ast.NodeTransformer):
    """Renames each function's local variables (not its arguments, globals or attributes)
    to v0, v1, ... in order of first appearance."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        declared = {n for stmt in ast.walk(node) if isinstance(stmt, (ast.Global, ast.Nonlocal)) for n in stmt.names}
        args = {a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                                *(x for x in (node.args.vararg, node.args.kwarg) if x))}
        stored: list[str] = []
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store) and sub.id not in stored:
                stored.append(sub.id)
        names = {n: f"v{i}" for i, n in enumerate(x for x in stored if x not in args and x not in declared)}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in names:
                sub.id = names[sub.id]
        node.body = _without_docstring(node.body)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def normalize_python(source: str) -> str | None:
    """`source` as `ast.dump` without comments, docstrings, formatting or the names of
    functions' local variables; None when it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    tree.body = _without_docstring(tree.body)
    tree = _Locals().visit(tree)
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def normalize_c(source: str) -> str:
    """C/C++/CUDA source without comments and with whitespace collapsed."""
    text = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return " ".join(text.split())


def normalized_hash(solution: Solution) -> str | None:
    """sha256 (hex) of the solution's normalized sources (see the module docstring), its
    language, entry point and calling convention; None when a Python source does not parse."""
    h = hashlib.sha256()
    spec = solution.spec
    parts = [spec.language.value, spec.entry_point, str(spec.destination_passing_style)]
    for src in sorted(solution.sources, key=lambda s: s.path):
        text = normalize_python(src.content) if src.path.endswith(".py") else normalize_c(src.content)
        if text is None:
            return None
        parts += [src.path, text]
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


# -- numba's LLVM IR, from a child process ------------------------------------------------


def numba_ir_hash(solution: Solution, definition: Definition, workload: Workload,
                  timeout_s: float = IR_TIMEOUT_S, dataset_root: Path | None = None) -> str | None:  # fmt: skip
    """sha256 (hex) of the normalized LLVM IR numba compiles the solution's `@njit`
    functions to, called once on `workload`'s inputs (see the module docstring); None
    for a solution that is not numba, or when the child fails or times out."""
    if solution.spec.language is not Language.numba:
        return None
    from solforge.bench.processes import scrubbed_env

    with tempfile.TemporaryDirectory(prefix="solforge-ir-") as tmp:
        work = Path(tmp)
        (work / "definition.json").write_text(dump_json(definition))
        (work / "solution.json").write_text(solution.model_dump_json())
        (work / "workload.json").write_text(workload.model_dump_json())
        (work / "request.json").write_text(json.dumps({"dataset_root": str(dataset_root or "")}))
        try:
            done = subprocess.run([sys.executable, "-m", "solforge.search.dedup", str(work)], cwd=work,
                                  env=scrubbed_env("cpu"), capture_output=True, timeout=timeout_s,
                                  start_new_session=True)  # fmt: skip
        except subprocess.TimeoutExpired:
            return None
        out = work / "ir.sha256"
        return out.read_text().strip() if done.returncode == 0 and out.exists() else None


def _strip_ir(ir: str, module: str) -> str:
    """IR without what depends on the module's name, the process or the build: symbol
    names carrying the module name, metadata, and string constants (file names)."""
    ir = ir.replace(module, "M")
    ir = re.sub(r"!\d+", "!", ir)
    ir = re.sub(r"^(source_filename|target datalayout|target triple).*$", "", ir, flags=re.M)
    return re.sub(r'c"[^"]*"', 'c""', ir)


def _child(work: Path) -> int:
    """The child's body: import the solution, call it once, hash the IR of every
    dispatcher it compiled."""
    import importlib.util

    import numba

    from solforge.bench.inputs import make_inputs
    from solforge.spec import Definition as Defn
    from solforge.spec import Solution as Sol
    from solforge.spec import Workload as Wl

    definition = Defn.model_validate_json((work / "definition.json").read_text())
    solution = Sol.model_validate_json((work / "solution.json").read_text())
    workload = Wl.model_validate_json((work / "workload.json").read_text())
    request = json.loads((work / "request.json").read_text())
    src_dir = work / "src"
    for s in solution.sources:
        (src_dir / s.path).parent.mkdir(parents=True, exist_ok=True)
        (src_dir / s.path).write_text(s.content)
    module_name = "solforge_ir_candidate"
    spec = importlib.util.spec_from_file_location(module_name, src_dir / solution.spec.entry_file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(src_dir))
    spec.loader.exec_module(module)
    axes = definition.resolve_axes(workload.axes)
    kwargs = make_inputs(definition, workload, axes, 0, "normal", "cpu", Path(request["dataset_root"] or "."))
    if solution.spec.destination_passing_style:
        import torch

        for name, out in definition.outputs.items():
            kwargs[name] = torch.empty(definition.shape_of(out, axes), dtype=out.dtype.to_torch())
    fn = getattr(module, solution.spec.entry_function)
    try:
        fn(**kwargs)
    except Exception:  # noqa: BLE001 - what was compiled before the error is what we hash
        pass
    irs = []
    for name, value in sorted(vars(module).items()):
        if isinstance(value, numba.core.registry.CPUDispatcher):
            for sig in value.signatures:
                irs.append(f"{name}:{sig}\n" + _strip_ir(value.inspect_llvm(sig), module_name))
    if not irs:
        return 1
    (work / "ir.sha256").write_text(hashlib.sha256("\n".join(irs).encode()).hexdigest())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_DISABLE_JIT", "0")
    sys.exit(_child(Path(sys.argv[1])))
