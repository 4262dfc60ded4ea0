"""numba: Python kernels compiled by numba's LLVM JIT (`@njit`, `prange`), the CPU's language here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from solforge.bench.languages import LanguagePlugin, register_language

if TYPE_CHECKING:
    from solforge.bench.build import Built
    from solforge.spec import Definition, Solution


@register_language
class NumbaLanguage(LanguagePlugin):
    name = "numba"
    launches_own_kernels = True
    toolchain_modules = ("numba",)
    env_prefixes = ("NUMBA_",)
    prompt_notes = ("numba: the work runs in the solution's own @njit kernels on NumPy views of the tensors "
                    "(tensor.numpy(); bfloat16 through its int16 bits); torch only allocates and views.")

    def build(self, solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
        """Import the `.py` entry file, recording the `.py` files its code writes first: a
        kernel generated into a file it imports is its own (`guards.launches`)."""
        from solforge.bench.guards.launches import record_generated_sources

        record_generated_sources()
        return super().build(solution, definition, workdir, device, timeout_s)

    def install_launch_hooks(self, device: str) -> None:
        import sys

        from solforge.bench.guards.launches import patch_numba

        patch_numba(cuda=device.startswith("cuda") or "numba.cuda" in sys.modules)

    def descriptors(self, sources: str) -> dict[str, int | str | bool]:
        return {"parallel": "prange" in sources or "parallel=True" in sources,
                "fastmath": bool(re.search(r"fastmath\s*=\s*True", sources))}
