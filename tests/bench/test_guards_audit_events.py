"""The guards' one audit hook (`guards.audit_events`): each handler sees its own events,
in order, with the raising frame at CALLER_DEPTH; the audit guard is called for every
event its `_judge` acts on and no other.

Audit hooks cannot be removed, so what installs hooks runs in a fresh interpreter."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import textwrap

from solforge.bench.guards import audit


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_handlers_see_only_their_events_in_order_with_the_raising_frame():
    result = _run("""
        import json, sys
        from solforge.bench.guards import audit_events
        seen = []
        def first(event, args):
            seen.append(("first", event, sys._getframe(audit_events.CALLER_DEPTH).f_code.co_name))
        def second(event, args):
            seen.append(("second", event, sys._getframe(audit_events.CALLER_DEPTH).f_code.co_name))
        audit_events.add(first, ["solforge.test.a", "solforge.test.b"])
        audit_events.add(second, ["solforge.test.a"])
        audit_events.add(first, ["solforge.test.a"])  # again: no second call
        def raiser():
            sys.audit("solforge.test.a")
            sys.audit("solforge.test.b")
            sys.audit("solforge.test.c")
            id(raiser)
        raiser()
        print(json.dumps({"seen": seen, "first": sorted(audit_events.events_of(first))}))
    """)
    assert result["seen"] == [["first", "solforge.test.a", "raiser"], ["second", "solforge.test.a", "raiser"],
                              ["first", "solforge.test.b", "raiser"]]
    assert result["first"] == ["solforge.test.a", "solforge.test.b"]


def test_a_handler_that_raises_refuses_the_operation_and_stops_the_event():
    result = _run("""
        import json, sys
        from solforge.bench.guards import audit_events
        seen = []
        def refuse(event, args):
            raise PermissionError("refused")
        audit_events.add(refuse, ["solforge.test.x"])
        audit_events.add(lambda e, a: seen.append(e), ["solforge.test.x"])
        try:
            sys.audit("solforge.test.x")
            refused = False
        except PermissionError:
            refused = True
        print(json.dumps({"refused": refused, "seen": seen}))
    """)
    assert result == {"refused": True, "seen": []}


def test_the_guards_register_through_the_dispatcher_and_still_name_the_caller():
    """The audit guard, armed, names a frame read by the solution's own file: the frame it
    blames is the raiser's, not the dispatcher's; and builtins.id reaches no guard."""
    result = _run("""
        import json, os, sys, tempfile
        from solforge.bench.guards import audit_events
        from solforge.bench.guards.audit import AuditGuard, JUDGED_EVENTS
        from solforge.bench.guards.code_strings import check_code_strings
        from solforge.bench.guards.watch import watch_call
        root = tempfile.mkdtemp()
        guard = AuditGuard()
        guard.arm(root)
        check_code_strings(["torch.nn.functional.rms_norm"], root)
        with watch_call("cpu"):
            pass
        path = os.path.join(root, "kernel.py")
        with open(path, "w") as f:
            f.write("import sys\\ndef run():\\n    return sys._getframe(0).f_back\\n")
        sys.path.insert(0, root)
        import kernel
        guard.take()
        kernel.run()
        findings = [f.message for f in guard.take()]
        print(json.dumps({"findings": findings, "id": "builtins.id" in audit_events._HANDLERS,
                          "judged": sorted(audit_events.events_of(guard._hook)) == sorted(JUDGED_EVENTS)}))
    """)
    assert result["judged"] and not result["id"]
    assert any("kernel.py:3" in f for f in result["findings"]), result["findings"]


def _events_judged_in_source() -> set[str]:
    """Every event name `AuditGuard._judge` compares `event` with: string constants and
    the module's frozensets of names."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(audit.AuditGuard._judge)))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "event":
            for right in node.comparators:
                if isinstance(right, ast.Constant) and isinstance(right.value, str):
                    names.add(right.value)
                elif isinstance(right, ast.Tuple):
                    names |= {e.value for e in right.elts if isinstance(e, ast.Constant)}
                elif isinstance(right, ast.Name):
                    names |= set(getattr(audit, right.id))
    return names


def test_the_audit_guard_is_called_for_every_event_it_judges():
    judged = _events_judged_in_source()
    assert {"open", "os.kill", "socket.connect", "os.fork", "sys._getframe"} <= judged  # the parse found them
    assert judged <= audit.JUDGED_EVENTS, sorted(judged - audit.JUDGED_EVENTS)
