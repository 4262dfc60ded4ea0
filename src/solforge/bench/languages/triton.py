"""Triton: `@triton.jit` kernels, compiled for a GPU, or run by Triton's interpreter on the
CPU (TRITON_INTERPRET=1, set by the device kind), where a time is the interpreter's and
not a measurement. Cross-compiled for a GPU target on any machine (`bench.crosscompile`).

Under the interpreter `@triton.autotune` cannot choose: its benchmark (`do_bench`) asks
the GPU driver for a timer and fails with "0 active drivers", and an interpreter's times
would mean nothing anyway. The plugin makes the autotuner skip the benchmark for kernels
the interpreter runs and take the first config that survives pruning (see
`first_config_under_interpreter`); on a GPU nothing changes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solforge.bench.languages import LanguagePlugin, register_language
from solforge.spec import Definition, Solution, Workload

if TYPE_CHECKING:
    from solforge.bench.build import Built

_MARK = "_solforge_first_config_under_interpreter"


@register_language
class TritonLanguage(LanguagePlugin):
    name = "triton"
    launches_own_kernels = True
    toolchain_modules = ("triton",)
    env_prefixes = ("TRITON_",)
    prompt_notes = ("Triton: the work runs in the solution's own @triton.jit kernels launched with kernel[grid](...); "
                    "torch only allocates outputs.")

    def build(self, solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
        """Import the `.py` entry file, the autotuner already told to skip its benchmark
        under the interpreter (a kernel autotuned at import time must run too)."""
        from solforge.bench.guards.launches import record_generated_sources

        first_config_under_interpreter()
        record_generated_sources()  # a kernel generated into a file it imports is its own
        return super().build(solution, definition, workdir, device, timeout_s)

    def install_launch_hooks(self, device: str) -> None:
        from solforge.bench.guards.launches import patch_triton

        patch_triton()
        first_config_under_interpreter()

    def timed_is_measurement(self, device: str) -> bool:
        """False where the device kind runs Triton under its interpreter (the CPU)."""
        from solforge.hardware.device import split_device

        kind, _ = split_device(device)
        return kind.env.get("TRITON_INTERPRET") != "1"

    def cross_compile(self, solution: Solution, definition: Definition, workloads: list[Workload],
                      target: str) -> list[Any] | None:
        from solforge.bench.crosscompile import cross_compile

        return cross_compile(solution, definition, workloads, target)

    def descriptors(self, sources: str) -> dict[str, int | str | bool]:
        return {"tensor_cores": "tl.dot(" in sources, "persistent": bool(re.search(r"tl\.num_programs\(", sources))}


def first_config_under_interpreter() -> None:
    """Make `triton.runtime.autotuner.Autotuner` skip its benchmark when the kernel it
    tunes is an `InterpretedFunction` (TRITON_INTERPRET=1 at decoration): every config
    then gets the same time, so the autotuner's `min` keeps the first config left after
    its pruning, and no config is launched to be timed. Autotuners of compiled kernels
    benchmark as before. Wraps `Autotuner._bench`, which every triton 3.x release calls
    once per config and whose result the autotuner only compares; once per process.
    A no-op where triton is not installed."""
    try:
        from triton.runtime.autotuner import Autotuner
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:
        return
    original = Autotuner.__dict__.get("_bench")
    if original is None or getattr(original, _MARK, False):
        return

    def _bench(self, *args, config, **meta):
        if isinstance(_innermost_kernel(self), InterpretedFunction):
            return [0.0, 0.0, 0.0]  # the (median, 20th, 80th percentile) triple do_bench returns, in ms
        return original(self, *args, config=config, **meta)

    _bench.__wrapped__ = original
    setattr(_bench, _MARK, True)
    Autotuner._bench = _bench


def _innermost_kernel(tuner: object) -> object:
    """The kernel under an Autotuner's chain of wrappers (Heuristics, nested autotuners)."""
    kernel = getattr(tuner, "fn", None)
    for _ in range(8):
        if type(kernel).__name__ not in ("Autotuner", "Heuristics"):
            break
        kernel = getattr(kernel, "fn", None)
    return kernel
