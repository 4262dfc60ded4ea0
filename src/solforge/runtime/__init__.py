"""Deploying winners into PyTorch: custom ops, per-shape dispatch, kernelize, export, and the end-to-end check.

- `winners`: a run's exported winner as (Definition, Solution, tuned shapes);
- `ops`: a winner as a `torch.library` custom op with a fake implementation;
- `dispatch`: which winner serves a call, or the original module;
- `bindings`: where each op family goes in a transformers model;
- `kernelize`: `kernelize`, `use_kernels`, `apply`;
- `check`: original vs kernelized logits and tokens/s (eager, torch.compile, both kernelized);
- `export`: winners as a Hugging Face `kernels` package;
- `optimize`: profile -> evolve -> kernelize -> check, resumable.

`kernelize()` and `optimize()` are reached as `solforge.kernelize` and
`solforge.runtime.optimize.optimize` (their module names would shadow them here).
torch and the solutions' languages are imported on first use, so `import solforge.runtime` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from solforge.runtime.check import CheckReport, check_model
    from solforge.runtime.dispatch import KernelFallbackWarning
    from solforge.runtime.export import export_hf_kernels
    from solforge.runtime.kernelize import Kernels, apply, kernels_of, use_kernels
    from solforge.runtime.optimize import OptimizeConfig
    from solforge.runtime.winners import Winner, load_winner, load_winners

_LAZY = {
    "CheckReport": "check", "check_model": "check", "KernelFallbackWarning": "dispatch",
    "export_hf_kernels": "export", "Kernels": "kernelize", "apply": "kernelize",
    "kernels_of": "kernelize", "use_kernels": "kernelize", "OptimizeConfig": "optimize", "Winner": "winners",
    "load_winner": "winners", "load_winners": "winners",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"solforge.runtime.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'solforge.runtime' has no attribute '{name}'")


__all__ = sorted(_LAZY)
