"""Mutation score of the reward-hack guards and the search operators: do the tests bite?

Each mutant changes one thing in one source file (a comparison flipped, `and`/`or`
swapped, a `not` dropped, a boolean or number constant changed, a `return` of a
collection emptied), in a private copy of the tree (`git archive HEAD`, so the working
tree and other people's edits are never touched). The file's tests then run against
the mutant; a failing run kills it. A mutant that times out counts as killed (the tests
noticed something); one that survives is listed, with its line, to read.

    python benchmarks/mutation.py [--per-file 25] [--seed 0] [--timeout 300]

Mutants are sampled (`--per-file` per source file, a fixed seed) because each needs a
test run. Some survivors are equivalent mutants (a change that cannot alter behaviour);
the list says where to look.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source file -> the tests that are meant to catch a change in it (fast, in-process ones first)
TARGETS: dict[str, list[str]] = {
    "src/solforge/bench/guards/static.py": ["tests/bench/test_guards_static.py"],
    "src/solforge/bench/guards/recorder.py": ["tests/bench/test_guards_recorder.py"],
    "src/solforge/bench/guards/audit.py": ["tests/bench/test_guards_audit.py"],
    "src/solforge/bench/guards/watch.py": ["tests/bench/test_guards_watch.py"],
    "src/solforge/bench/guards/integrity.py": ["tests/bench/test_guards_integrity.py"],
    "src/solforge/bench/guards/launches.py": ["tests/bench/test_guards_launches.py"],
    "src/solforge/bench/guards/outputs.py": ["tests/bench/test_guards_outputs.py"],
    "src/solforge/search/operators.py": ["tests/search/test_search_engine_units.py",
                                         "tests/search/test_search_operators.py"],
}
SWAPS = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


@dataclass
class Site:
    kind: str
    line: int
    index: int  # the n-th node of this kind in the file


class _Sites(ast.NodeVisitor):
    def __init__(self) -> None:
        self.sites: list[Site] = []
        self._count: dict[str, int] = {}
        self._doc: set[int] = set()

    def _add(self, kind: str, node: ast.AST) -> None:
        n = self._count.get(kind, 0)
        self._count[kind] = n + 1
        self.sites.append(Site(kind, getattr(node, "lineno", 0), n))

    def visit_Compare(self, node: ast.Compare) -> None:
        if type(node.ops[0]) in SWAPS:
            self._add("compare", node)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self._add("boolop", node)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._add("not", node)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, bool) or (isinstance(node.value, int) and not isinstance(node.value, bool)):
            self._add("constant", node)

    def visit_Return(self, node: ast.Return) -> None:
        if isinstance(node.value, (ast.List, ast.ListComp, ast.Set, ast.Dict, ast.Call, ast.Name)):
            self._add("return", node)
        self.generic_visit(node)


class _Mutate(ast.NodeTransformer):
    def __init__(self, site: Site) -> None:
        self.site = site
        self._count: dict[str, int] = {}
        self.done = False

    def _hit(self, kind: str) -> bool:
        n = self._count.get(kind, 0)
        self._count[kind] = n + 1
        return kind == self.site.kind and n == self.site.index and not self.done

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        if type(node.ops[0]) in SWAPS and self._hit("compare"):
            node.ops[0] = SWAPS[type(node.ops[0])]()
            self.done = True
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        if self._hit("boolop"):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            self.done = True
        return self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if isinstance(node.op, ast.Not) and self._hit("not"):
            self.done = True
            return self.generic_visit(node).operand
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, bool) and self._hit("constant"):
            self.done = True
            return ast.copy_location(ast.Constant(not node.value), node)
        if isinstance(node.value, int) and not isinstance(node.value, bool) and self._hit("constant"):
            self.done = True
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        if isinstance(node.value, (ast.List, ast.ListComp, ast.Set, ast.Dict, ast.Call, ast.Name)) \
                and self._hit("return"):
            self.done = True
            return ast.copy_location(ast.Return(ast.List(elts=[], ctx=ast.Load())), node)
        return self.generic_visit(node)


def _tree_copy(dest: Path) -> None:
    """HEAD's tree (not the working tree's edits) into `dest`."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(dest)


def _run_tests(copy: Path, tests: list[str], timeout_s: float) -> str:
    """'killed', 'survived' or 'timeout' for the current state of the copy."""
    env = {"PYTHONPATH": str(copy / "src"), "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())}
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                               *tests], cwd=copy, env=env, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-file", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON of every mutant and its fate")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="solforge-mutation-") as tmp:
        copy = Path(tmp)
        _tree_copy(copy)
        for rel, tests in TARGETS.items():
            tests = [t for t in tests if (copy / t).exists()]
            path = copy / rel
            if not path.exists() or not tests:
                print(f"{rel}: skipped (missing file or tests)")
                continue
            original = path.read_text()
            baseline = _run_tests(copy, tests, args.timeout)
            if baseline != "survived":
                print(f"{rel}: skipped (its tests fail unmutated: {baseline})")
                continue
            finder = _Sites()
            finder.visit(ast.parse(original))
            sites = rng.sample(finder.sites, min(args.per_file, len(finder.sites)))
            for site in sites:
                mutated = _Mutate(site)
                tree = mutated.visit(ast.parse(original))
                if not mutated.done:
                    continue
                path.write_text(ast.unparse(ast.fix_missing_locations(tree)))
                t0 = time.monotonic()
                fate = _run_tests(copy, tests, args.timeout)
                path.write_text(original)
                results.append({"file": rel, "kind": site.kind, "line": site.line, "fate": fate,
                                "seconds": round(time.monotonic() - t0, 1)})
                print(f"{rel}:{site.line} {site.kind}: {fate}", flush=True)
    print()
    print("| file | mutants | killed | survived | score |")
    print("| --- | --- | --- | --- | --- |")
    total_k = total_n = 0
    for rel in TARGETS:
        mine = [r for r in results if r["file"] == rel]
        if not mine:
            continue
        killed = sum(r["fate"] != "survived" for r in mine)
        total_k, total_n = total_k + killed, total_n + len(mine)
        print(f"| {rel.removeprefix('src/solforge/')} | {len(mine)} | {killed} | {len(mine) - killed} | "
              f"{killed / len(mine):.0%} |")
    if total_n:
        print(f"| all | {total_n} | {total_k} | {total_n - total_k} | {total_k / total_n:.0%} |")
    survivors = [r for r in results if r["fate"] == "survived"]
    if survivors:
        print("\nsurvivors (read them: some are equivalent mutants):")
        for r in survivors:
            print(f"  {r['file']}:{r['line']} {r['kind']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
