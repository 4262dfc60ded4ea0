"""Observation the solution cannot see: torch's profiler state looks the same in every call.

Every call the judge observes runs torch's profiler in the solution's process (the op
recorder of the correctness calls, the judge's secret sample of timed calls), and
torch answers whoever asks whether one is running. A kernel that asks is honest exactly
when it is watched. In the solution's process (`hide_profiler`, before any solution
code is imported) every such answer is "no profiler", whether one runs or not:

- `torch.autograd.profiler._is_profiler_enabled`, the flag torch's profiler sets on
  start: the harness sets it back to False once its profiler is on (`conceal`);
- `torch._C._autograd._profiler_enabled()` and its alias
  `torch.autograd._profiler_enabled()`: False;
- `torch._C._autograd._profiler_type()`: `ActiveProfilerType.NONE`.

So a kernel that branches on them takes its unobserved path in the observed calls too,
where the recorder sees it. The harness asks `profiler_running` (the real answer, kept
in a closure). The replacements are in the integrity snapshot (`PROTECTED`): a solution
that puts torch's own functions back is tampering with the harness.

torch's own uses of these answers are annotations for the profiler's trace
(`record_function` regions of compiled graphs, data pipes, RPC); with "no profiler"
they are skipped, and the ops themselves are still recorded.

Not covered: the profiler's cost (each op is slower under it: a timing side channel),
a second profiler the solution starts (it fails while one runs), and profiler state
read through C (a native extension, ctypes into torch's libraries: the audit guard
names the latter).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _real() -> Callable[[], bool]:
    real = torch._C._autograd._profiler_enabled

    def profiler_running() -> bool:
        """Whether a torch profiler is running in this process (the real answer)."""
        return bool(real())

    return profiler_running


profiler_running = _real()

# Where torch answers "is a profiler running?", as the integrity guard names them.
PROTECTED: tuple[str, ...] = (
    "torch._C._autograd._profiler_enabled", "torch.autograd._profiler_enabled", "torch._C._autograd._profiler_type",
    "torch.autograd.profiler._set_is_profiler_enabled", "torch.autograd.profiler._run_on_profiler_start",
    "torch.autograd.profiler._run_on_profiler_stop", "solforge.bench.guards.observation.profiler_running",
    "solforge.bench.guards.observation.conceal",
)


def _no_profiler() -> bool:
    """torch._C._autograd._profiler_enabled, as the solution's process sees it: False."""
    return False


def _no_profiler_type() -> torch._C._profiler.ActiveProfilerType:
    """torch._C._autograd._profiler_type, as the solution's process sees it: NONE."""
    return torch._C._profiler.ActiveProfilerType.NONE


def hide_profiler() -> None:
    """Make torch answer "no profiler" in this process from now on (see the module
    docstring). Call once, before any solution code is imported."""
    torch._C._autograd._profiler_enabled = _no_profiler
    torch.autograd._profiler_enabled = _no_profiler
    torch._C._autograd._profiler_type = _no_profiler_type


def conceal() -> None:
    """Set torch's profiler flag back to False once the harness's profiler has started
    (its stop sets it False again)."""
    torch.autograd.profiler._set_is_profiler_enabled(False)
