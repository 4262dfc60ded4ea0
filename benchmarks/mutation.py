"""Mutation score of the reward-hack guards and the search operators: do the tests bite?

Each mutant changes one thing in one source file (a comparison flipped, `and`/`or`
swapped, a `not` dropped, a boolean or number constant changed, a `return` of a
collection emptied; a `return []` is left alone: emptying it changes nothing), in a
private copy of the tree (`git archive HEAD`, so the working tree and other people's
edits are never touched). The file's tests then run against
the mutant; a failing run kills it. A mutant that times out counts as killed (the tests
noticed something); one that survives is listed, with its line, to read.

    python benchmarks/mutation.py [--per-file 25] [--seed 0] [--timeout 300] [--only static,watch]

Mutants are sampled (`--per-file` per source file, a fixed seed per file, so `--only`
draws the same sample as a full run) because each needs a test run; a `--per-file`
above a file's count takes all of its mutants. Equivalent mutants (a change that
cannot alter behaviour) are listed in `EQUIVALENT`, each with the reason; they are
left out before sampling, and the table counts them per file. A listed site that no
longer exists is reported, so the list cannot go stale silently. Every other survivor
is listed with its line and its change, to read.
"""

from __future__ import annotations

import argparse
import ast
import difflib
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
# source file -> the tests that are meant to catch a change in it (fast, in-process ones
# only: each mutant runs them). The `_mutants` files hold the tests written against the
# survivors of earlier runs.
TARGETS: dict[str, list[str]] = {
    f"src/solforge/bench/guards/{g}.py": [f"tests/bench/test_guards_{g}.py", f"tests/bench/test_guards_{g}_mutants.py"]
    for g in ("static", "recorder", "audit", "watch", "integrity", "launches", "outputs")
}
TARGETS["src/solforge/search/operators.py"] = ["tests/search/test_search_engine_units.py",
                                               "tests/search/test_operators_mutants.py"]
# Equivalent mutants: (source file, fragment, why). A mutant is equivalent when a line it
# changes contains `fragment` after the mutation and did not before (both in `ast.unparse`
# form, so a statement spread over several lines is one line here), which names the site
# and the change without a line number. For a change as plain as `return []`: `in NAME:
# BEFORE -> AFTER` asks that the site lie in the function or method NAME and that the
# line read BEFORE before the mutation and AFTER after it. Only mutants no input can tell
# apart belong here; one that a CPU test cannot reach but a GPU test can is a survivor,
# not an equivalent.
_G = "src/solforge/bench/guards/"
_OPEN_FLAGS = ("every 'open' audit event of CPython (builtins.open/FileIO, os.open, io.open_code) has three "
               "arguments, the third the int flags, and the flags alone say whether it writes (FileIO derives "
               "them from the mode): the mode string only repeats them")
EQUIVALENT: list[tuple[str, str, str]] = [
    (_G + "recorder.py", "range(len(parts) - 1, 0, -2)",
     "a failed import of a.b.c has imported a.b and bound it on a, so the next shorter cut reaches the same "
     "object by getattr; only a three-part name whose middle part is a class could resolve otherwise, and "
     "its canonical name is then the name itself (torch.Tensor.softmax)"),
    (_G + "recorder.py", "parts[-2].isidentifier()",
     "every part of a name code can call is an identifier, and a non-identifier last part names no aten op "
     "(hasattr(torch.ops.aten, 'x-y') is False): testing the part before it changes nothing"),
    (_G + "launches.py", "kwargs.get('warmup', True)",
     "warmup is a required keyword-only argument of triton's JITFunction.run and InterpretedFunction.run "
     "(3.x): every call that reaches the wrapper passes it, so the default is never read"),
    (_G + "launches.py", "for _ in range(9)",
     "a bound against a cycle of .fn: triton nests Autotuner > Heuristics > JITFunction > function, three "
     "hops; eight or nine allowed hops find the same function"),
    (_G + "audit.py", "self.armed = True",
     "before arm() the root is None and _own answers None for every frame: nothing is reported, armed or not"),
    (_G + "audit.py", "if frame is None and self.root is None",
     "_own is never handed None (its callers pass sys._getframe(2) or a frame of a walk) and the root is set "
     "whenever the hook is armed: neither half of the test is ever true"),
    (_G + "audit.py", "if where is not None and args[1] in ('f_back', 'f_locals')",
     "reading f_back or f_locals raises no object.__getattr__ event in CPython 3.10-3.13 (tb_frame, gi_frame, "
     "f_code and __code__ do): the branch never runs"),
    (_G + "audit.py", "and (caller is None) and caller.f_code",
     "the same never-run branch (f_back and f_locals raise no audit event)"),
    (_G + "audit.py", "flags = args[2] if len(args) > 2 or isinstance(args[2], int)", _OPEN_FLAGS),
    (_G + "audit.py", "isinstance(args[2], int) else 1", _OPEN_FLAGS),
    (_G + "audit.py", "mode = args[1] if len(args) <= 1", _OPEN_FLAGS),
    (_G + "audit.py", "mode = args[1] if len(args) > 2 and", _OPEN_FLAGS),
    (_G + "audit.py", "isinstance(args[2], str) else ''", _OPEN_FLAGS),
    (_G + "audit.py", "rsplit(os.sep, 2)[0]",
     "the parent of the solforge package is src/ (which holds only solforge) in a checkout and site-packages "
     "(already a library root) when installed: the same files are libraries either way"),
    (_G + "audit.py", "(event == 'os.killpg' and target == -os.getpgid(0))",
     "a process group id is positive, so a target equal to minus the own group is negative, and the next rule "
     "(killpg or a negative target: is its absolute value the own group?) answers True for it either way"),
    (_G + "static.py", "d.rsplit('.', 2)[-1] in _CODE_ATTRS",
     "the last part of a dotted name is the same whether one split or two are made from the right"),
    (_G + "static.py", "in dict_owner: return set() -> return []",
     "its callers only test the owners for truth and iterate them (`if owners:`, a set comprehension): an "
     "empty list and an empty set behave alike"),
    (_G + "static.py", "in write_targets: return set() -> return []",
     "its callers only iterate the names (`judge_write`) or union them (`set().union(*...)`, which takes any "
     "iterable): an empty list and an empty set behave alike"),
    (_G + "launches.py", "_RECORDING.append(False)",
     "_RECORDING is a once-flag: only whether the list is empty is read (`if not _RECORDING`), never what it "
     "holds"),
    (_G + "launches.py", "flags = args[2] if len(args) > 2 or isinstance(args[2], int)", _OPEN_FLAGS),
    (_G + "launches.py", "isinstance(args[2], int) else 1", _OPEN_FLAGS),
    (_G + "launches.py", "mode = args[1] if len(args) <= 1", _OPEN_FLAGS),
    (_G + "launches.py", "mode = args[1] if len(args) > 2 and", _OPEN_FLAGS),
    (_G + "launches.py", "isinstance(args[2], str) else ''", _OPEN_FLAGS),
    (_G + "watch.py", "_HOOK_INSTALLED = False",
     "a second audit hook sees the same events as the first and notes the same strings, which _leave "
     "deduplicates: the findings are the same, only the cost grows"),
    (_G + "watch.py", "program = args[1] if len(args) > 2",
     "fork_exec always gets 23 arguments (CPython 3.11, 3.12): more than one and more than two alike"),
]
SWAPS = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def _emptiable(node: ast.Return) -> bool:
    """A return whose value could be a collection, and is not already `[]` (emptying an
    empty list would change nothing: not a mutant)."""
    if isinstance(node.value, ast.List) and not node.value.elts:
        return False
    return isinstance(node.value, (ast.List, ast.ListComp, ast.Set, ast.Dict, ast.Call, ast.Name))


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
        if _emptiable(node):
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
        if _emptiable(node) and self._hit("return"):
            self.done = True
            return ast.copy_location(ast.Return(ast.List(elts=[], ctx=ast.Load())), node)
        return self.generic_visit(node)


def _changed_lines(original: str, site: Site) -> tuple[list[str], list[str]] | None:
    """(lines the mutant of `site` removes, lines it adds), in `ast.unparse` form; None when
    the site cannot be mutated."""
    mutated = _Mutate(site)
    tree = mutated.visit(ast.parse(original))
    if not mutated.done:
        return None
    before = ast.unparse(ast.parse(original)).splitlines()
    after = ast.unparse(ast.fix_missing_locations(tree)).splitlines()
    diff = list(difflib.unified_diff(before, after, lineterm="", n=0))
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def _function_spans(original: str) -> dict[str, list[tuple[int, int]]]:
    """Function or method name -> the (first, last) lines of each definition of it."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for node in ast.walk(ast.parse(original)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans.setdefault(node.name, []).append((node.lineno, node.end_lineno or node.lineno))
    return spans


def equivalent_sites(rel: str, original: str, sites: list[Site]) -> tuple[set[int], list[str]]:
    """(indices into `sites` of the equivalent mutants of `rel`, `EQUIVALENT` fragments of
    `rel` that match no site: stale entries, to fix)."""
    wanted = [fragment for file, fragment, _ in EQUIVALENT if file == rel]
    if not wanted:
        return set(), []
    spans = _function_spans(original)
    hits: set[int] = set()
    used: set[str] = set()
    for i, site in enumerate(sites):
        changed = _changed_lines(original, site)
        if changed is None:
            continue
        removed, added = changed
        for entry in wanted:
            fragment, function = entry, None
            if entry.startswith("in ") and ": " in entry:
                function, fragment = entry[3:].split(": ", 1)
                if not any(first <= site.line <= last for first, last in spans.get(function, [])):
                    continue
            if " -> " in fragment:
                before, after = fragment.split(" -> ", 1)
                match = any(before in line for line in removed) and any(after in line for line in added)
            else:
                match = any(fragment in line for line in added) and not any(fragment in line for line in removed)
            if match:
                hits.add(i)
                used.add(entry)
    return hits, [f for f in wanted if f not in used]


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
    parser.add_argument("--only", default="", help="comma-separated parts of the source paths to run (e.g. "
                        "'static,watch'); the sampling of each file is the same as in a full run")
    args = parser.parse_args()
    results = []
    skipped: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="solforge-mutation-") as tmp:
        copy = Path(tmp)
        _tree_copy(copy)
        wanted = [part for part in args.only.split(",") if part]
        for rel, tests in TARGETS.items():
            if wanted and not any(part in rel for part in wanted):
                continue
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
            equivalent, stale = equivalent_sites(rel, original, finder.sites)
            for fragment in stale:
                print(f"{rel}: EQUIVALENT entry matches no mutant (the code changed? fix the list): {fragment!r}")
            skipped[rel] = len(equivalent)
            live = [s for i, s in enumerate(finder.sites) if i not in equivalent]
            # One generator per file: a file's sample does not depend on the files run before it.
            sites = random.Random(f"{args.seed}/{rel}").sample(live, min(args.per_file, len(live)))
            for site in sites:
                mutated = _Mutate(site)
                tree = mutated.visit(ast.parse(original))
                if not mutated.done:
                    continue
                path.write_text(ast.unparse(ast.fix_missing_locations(tree)))
                t0 = time.monotonic()
                fate = _run_tests(copy, tests, args.timeout)
                path.write_text(original)
                removed, added = _changed_lines(original, site) or ([], [])
                results.append({"file": rel, "kind": site.kind, "line": site.line, "fate": fate,
                                "seconds": round(time.monotonic() - t0, 1),
                                "change": [line.strip() for line in removed + added]})
                print(f"{rel}:{site.line} {site.kind}: {fate}", flush=True)
    print()
    print("| file | mutants | killed | survived | score | equivalent sites left out |")
    print("| --- | --- | --- | --- | --- | --- |")
    total_k = total_n = 0
    for rel in TARGETS:
        mine = [r for r in results if r["file"] == rel]
        if not mine:
            continue
        killed = sum(r["fate"] != "survived" for r in mine)
        total_k, total_n = total_k + killed, total_n + len(mine)
        print(f"| {rel.removeprefix('src/solforge/')} | {len(mine)} | {killed} | {len(mine) - killed} | "
              f"{killed / len(mine):.0%} | {skipped.get(rel, 0)} |")
    if total_n:
        print(f"| all | {total_n} | {total_k} | {total_n - total_k} | {total_k / total_n:.0%} | "
              f"{sum(skipped.values())} |")
    survivors = [r for r in results if r["fate"] == "survived"]
    if survivors:
        print("\nsurvivors (a test that kills each, or an EQUIVALENT entry with the reason):")
        for r in survivors:
            print(f"  {r['file']}:{r['line']} {r['kind']}")
            for line in r["change"]:
                print(f"      {line}")
    if args.out:
        args.out.write_text(json.dumps({"mutants": results, "equivalent_left_out": skipped}, indent=1))


if __name__ == "__main__":
    main()
