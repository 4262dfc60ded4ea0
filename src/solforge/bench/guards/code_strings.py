"""The static guard's checks, at run time, on code the solution builds as it runs.

The static guard (`static`) reads a solution's files before anything runs; a string
handed to `exec`, `eval` or `compile` that it cannot evaluate (a kernel's source
generated per shape) is out of its sight. Every such compile raises the `compile`
audit event (PEP 578) with the source text (or AST) and its file name, so the same AST
checks run on it here, in the solution's process, once `check_code_strings(forbidden,
root)` is armed (at the build, before the solution is imported):

- whose: a source is checked when the frame that compiles it, passing over the standard
  library (importlib, `runpy`, `timeit`) and code itself generated from strings, is the
  solution's own: a file under `root`, or a `.py` file its code wrote
  (`launches.record_generated_sources`). A source compiled under a file's name is
  checked unless it is that file's content and the solution's code did not write it at
  run time (its files as submitted were checked before it ran; a library's file is not
  the solution's).
- what: everything `static` checks in a module (forbidden calls, timer and harness
  patching, op overrides), and, because the string runs in a namespace the solution
  fills (`exec(src, {"F": torch.nn.functional})`), whose names no AST can resolve: an
  attribute or an unbound name spelled like a forbidden function (`.rms_norm`), or a
  `getattr` with a computed name, counts as the forbidden call.
- code objects made without a source (`code.__new__`, which `CodeType(...)` and
  `code.replace` raise, and `marshal.loads`) from the solution's own code are findings:
  their names cannot be checked.

Findings wait until `take_code_string_findings()` (the call watch, `watch`, hands them
to the judge with the load's or the call's findings).

Not covered: strings compiled by an installed library on the solution's behalf (a
library's own exec helper: the first frame that decides is the library's), and code
compiled while no watch runs (the timed loop) is reported at the next watched call
only; forbidden torch ops are still seen at run time by the op recorder.
"""

from __future__ import annotations

import ast
import os
import sys
import threading
from types import FrameType

from solforge.bench.guards import audit_events
from solforge.bench.guards.findings import Guard, dedupe, finding
from solforge.bench.guards.launches import _WRITTEN  # .py files written in this process -> the writer's file
from solforge.spec import GuardFinding

_STDLIB = os.path.dirname(os.path.realpath(os.__file__)) + os.sep
_ARMED: dict[str, object] = {}  # "forbidden": list[str], "root": str (with a trailing separator)
_FINDINGS: list[GuardFinding] = []
_HOOKED: list[bool] = []
_EVENTS = ("compile", "code.__new__", "marshal.loads")  # what the hook judges
_BUSY = threading.local()  # per thread: the hook's own parse compiles too (a busy flag shared by
# threads would let another thread's compile through unchecked)


def check_code_strings(forbidden: list[str], root: str) -> None:
    """Arm the run-time check for a solution whose files lie under `root`, with the
    definition's `forbidden` calls (dotted names). Idempotent per process; a later call
    re-arms. Installs a process-wide audit hook once (it returns at once for other
    events), and `launches.record_generated_sources`. Raises nothing."""
    from solforge.bench.guards.launches import record_generated_sources

    record_generated_sources()  # which .py files the solution writes
    _ARMED["forbidden"] = list(forbidden)
    _ARMED["root"] = os.path.realpath(root) + os.sep
    if not _HOOKED:
        _HOOKED.append(True)
        audit_events.add(_hook, _EVENTS)


def take_code_string_findings() -> list[GuardFinding]:
    """The findings since the last take (deduplicated), and forget them."""
    found = dedupe(_FINDINGS)
    _FINDINGS.clear()
    return found


def _hook(event: str, args: tuple) -> None:
    if not _ARMED or getattr(_BUSY, "on", False):
        return
    _BUSY.on = True  # ast.parse below raises the compile event again
    try:
        # A compile may be asked for through the standard library (runpy, timeit); a code
        # object is built by the solution only when its own code calls the constructor
        # (the import machinery unmarshals every .pyc on the solution's behalf).
        where = _owner(sys._getframe(audit_events.CALLER_DEPTH), through_stdlib=event == "compile")
        if where is None:
            return
        if event == "compile":
            _check_source(args[0] if args else None, args[1] if len(args) > 1 else None, where)
        else:
            _FINDINGS.append(finding(Guard.FORBIDDEN_CALL, f"forbidden call check defeated: a code object built "
                                                           f"at run time ({event}) at {where}"))
    finally:
        _BUSY.on = False


def _owner(frame: FrameType | None, through_stdlib: bool) -> str | None:
    """`file:line` of the solution's frame that asked (see the module docstring), or None
    when the first deciding frame is not the solution's. Code compiled from strings is
    passed over; the standard library (and the frozen import machinery) only if
    `through_stdlib`."""
    while frame is not None:
        raw = frame.f_code.co_filename
        if raw.startswith("<"):
            if raw.startswith("<frozen") and not through_stdlib:
                return None  # the import machinery (unmarshalling a .pyc)
            frame = frame.f_back  # <string>: code the solution generated; <frozen importlib>
            continue
        real = os.path.realpath(raw)
        if through_stdlib and real.startswith(_STDLIB) and "-packages" not in real:
            frame = frame.f_back
            continue
        return f"{os.path.basename(real)}:{frame.f_lineno}" if _is_solutions(real) else None
    return None


def _is_the_file(real: str, source: object) -> bool:
    """Whether `source` (str or bytes) is the content of the file `real`."""
    if not isinstance(source, (str, bytes)):
        return False
    try:
        with open(real, "rb") as f:
            content = f.read()
    except OSError:
        return False
    return content == (source.encode() if isinstance(source, str) else bytes(source))


def _is_solutions(real: str) -> bool:
    """A file under the solution's root, or one its code wrote (transitively)."""
    root = str(_ARMED.get("root", ""))
    for _ in range(8):
        if real.startswith(root):
            return True
        writer = _WRITTEN.get(real)
        if writer is None:
            return False
        real = writer
    return False


def _check_source(source: object, filename: object, where: str) -> None:
    name = os.fsdecode(filename) if isinstance(filename, (str, bytes)) else "<string>"
    if not name.startswith("<"):
        real = os.path.realpath(name)
        generated = real in _WRITTEN and _is_solutions(_WRITTEN[real])
        if not generated and _is_the_file(real, source):
            # A library's file, or one of the solution's files as submitted (the static
            # guard read it), being imported. A file name is only a label: a string
            # compiled under one is checked unless it is that file's content.
            return
    if isinstance(source, (str, bytes)):
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return  # compile() itself will raise
    elif isinstance(source, ast.AST):
        tree = source
    else:
        return
    what = "source" if name.startswith("<") else os.path.basename(name)  # a string, or a file it wrote
    _FINDINGS.extend(code_string_findings(tree, list(_ARMED.get("forbidden", [])), f"<{what} compiled at {where}>"))


def code_string_findings(tree: ast.AST, forbidden: list[str], where: str) -> list[GuardFinding]:
    """The static guard's findings on `tree` (code compiled from a string at run time;
    `where` names it in messages, as `where:line`), plus the rules for names it cannot
    resolve (see the module docstring). Raises nothing."""
    from solforge.bench.guards.static import _PythonChecker

    checker = _PythonChecker(where, forbidden, None)
    checker.check(tree)
    found = list(checker.findings)
    if not forbidden:
        return found
    last: dict[str, str] = {}  # a forbidden function's own name -> the forbidden names that end with it
    for f in forbidden:
        name = f.rsplit(".", 1)[-1]
        last[name] = f"{last[name]} or {f}" if name in last else f
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments)
              for a in [*n.posonlyargs, *n.args, *n.kwonlyargs, n.vararg, n.kwarg] if a is not None}
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr in last:
            found.append(finding(Guard.FORBIDDEN_CALL, f"forbidden call {last[node.attr]} at {line} "
                                                       f"(attribute .{node.attr})"))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in last \
                and node.id not in bound:
            found.append(finding(Guard.FORBIDDEN_CALL, f"forbidden call {last[node.id]} at {line} "
                                                       f"(name {node.id} from the namespace it runs in)"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant):
            found.append(finding(Guard.FORBIDDEN_CALL, f"forbidden call check defeated: getattr with a computed "
                                                       f"name at {line}"))
    return dedupe(found)
