"""Reward-hack guards: static (AST) checks before a solution runs, and runtime checks in
the solution's process whose findings go to the judge (they can only add findings;
the judge's own checks are in `judge`).

Where the harness calls each guard, in order:

1. `static_findings(solution, definition)` — in the judge, before anything runs
   (forbidden calls, timer and harness patching, torch mode and op-registration
   tampering, caching on the entry point).
2. `IntegritySnapshot.take(protected)` — in the solution's process, BEFORE user code is imported;
   `snapshot.verify()` after every call (timers, torch.cuda events and synchronize,
   torch's comparison functions, the harness's own functions, swapped `__code__`).
3. `launch_counter(module_namespaces, solution, device)` — once, after the solution's
   modules (and its CUDA extension) are imported; `decoy_findings(counter, solution,
   calls)` after the correctness calls. On CUDA, wrap one correctness call in
   `counter.profile()` so that the decoy guard can also check the kernel names.
4. `watch_call(device)` around every call of user code (and around the import of its
   modules): threads and processes, and on CUDA work left on side streams; call
   `report.set_outputs(outputs)` right after the call.
5. `output_findings(outputs, device)` on every return value (exact torch.Tensor, with
   data, on the device).
6. `recorder.OpRecorder` around every correctness call: the torch ops it reached (the
   judge decides forbidden calls and decoys from the record).
7. `audit.AuditGuard`, armed at the build: introspection, /proc, network and (sandboxed)
   filesystem events raised from the solution's own files.

Any finding makes the evaluation REWARD_HACK; each finding's `guard` is one of the
stable names in `Guard`, and its message names the hack and where it was seen.

What the guards cover, and what they do not, is stated in each module's docstring:
`static` (AST), `cuda_source` (C++ text), `integrity` (identities), `launches` (decoys), `watch` (threads,
processes, side streams), `outputs` (lazy outputs), `recorder` (torch ops), `audit` (interpreter
events). In short, they do not
stop a determined attacker with C-level access (ctypes writes, native threads from an
extension); process isolation and correctness checks on fresh inputs remain the floor.
"""

from __future__ import annotations

from solforge.bench.guards.findings import Guard
from solforge.bench.guards.integrity import DEFAULT_PROTECTED, IntegritySnapshot
from solforge.bench.guards.launches import LaunchCounter, decoy_findings, launch_counter
from solforge.bench.guards.outputs import output_findings
from solforge.bench.guards.static import static_findings
from solforge.bench.guards.watch import CallReport, watch_call

__all__ = [
    "DEFAULT_PROTECTED",
    "CallReport",
    "Guard",
    "IntegritySnapshot",
    "LaunchCounter",
    "decoy_findings",
    "launch_counter",
    "output_findings",
    "static_findings",
    "watch_call",
]
