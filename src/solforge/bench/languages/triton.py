"""Triton: `@triton.jit` kernels, compiled for a GPU, or run by Triton's interpreter on the
CPU (TRITON_INTERPRET=1, set by the device kind), where a time is the interpreter's and
not a measurement. Cross-compiled for a GPU target on any machine (`bench.crosscompile`)."""

from __future__ import annotations

import re
from typing import Any

from solforge.bench.languages import LanguagePlugin, register_language
from solforge.spec import Definition, Solution, Workload


@register_language
class TritonLanguage(LanguagePlugin):
    name = "triton"
    launches_own_kernels = True
    toolchain_modules = ("triton",)
    env_prefixes = ("TRITON_",)
    prompt_notes = ("Triton: the work runs in the solution's own @triton.jit kernels launched with kernel[grid](...); "
                    "torch only allocates outputs.")

    def install_launch_hooks(self, device: str) -> None:
        from solforge.bench.guards.launches import patch_triton

        patch_triton()

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
