"""What the guards' audit hooks cost a solution's process per audited event.

CPython calls every audit hook (PEP 578) for every audited event; `id()` raises one
(`builtins.id`), and numba's compiler calls `id()` hundreds of thousands of times while
it compiles a kernel (`copy.deepcopy` of its IR). This times `id()` in a fresh process
with the hooks a solution's process has: none; one do-nothing Python hook (the floor of
any Python hook); the guards as the solution's process arms them (the audit guard, the
code-string check with its generated-sources record, the thread watch), through
`guards.audit_events`' one dispatcher; and, for comparison, four do-nothing bound-method
hooks (what four separate guard hooks cost at least, before each looked at the event).

    .venv/bin/python benchmarks/audit_hook_cost.py [--calls 200000] [--repeats 5]

Prints one line per setup: the median over the repeats of ns per `id()` call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

SETUPS = ("none", "one do-nothing hook", "the guards (one dispatcher)", "four do-nothing bound-method hooks")


def _per_call_ns(calls: int, repeats: int) -> float:
    x = object()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            id(x)
        samples.append((time.perf_counter() - t0) / calls * 1e9)
    return statistics.median(samples)


def _child(setup: str, calls: int, repeats: int) -> float:
    if setup == "one do-nothing hook":
        sys.addaudithook(lambda event, args: None)
    elif setup == "four do-nothing bound-method hooks":
        class Hook:
            armed = False

            def hook(self, event: str, args: tuple) -> None:
                if not self.armed:
                    return

        for _ in range(4):
            sys.addaudithook(Hook().hook)
    elif setup == "the guards (one dispatcher)":
        import tempfile

        from solforge.bench.guards.audit import AuditGuard
        from solforge.bench.guards.code_strings import check_code_strings
        from solforge.bench.guards.watch import watch_call

        root = tempfile.mkdtemp(prefix="solforge-hookcost-")
        AuditGuard().arm(root)
        check_code_strings(["torch.nn.functional.rms_norm"], root)
        with watch_call("cpu"):
            return _per_call_ns(calls, repeats)
    return _per_call_ns(calls, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.calls, args.repeats)))
        return 0
    for setup in SETUPS:  # each in a fresh process: audit hooks cannot be removed
        out = subprocess.run([sys.executable, __file__, "--child", setup, "--calls", str(args.calls),
                              "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
        print(f"{setup}: {json.loads(out.stdout.strip().splitlines()[-1]):.0f} ns per id()")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
