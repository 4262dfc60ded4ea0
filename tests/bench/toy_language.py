"""A toy language, registered from this one file: a new language touches no other file.

'numpyish' solutions are Python whose entry point takes and returns NumPy arrays: the
plugin builds them by importing the entry file (as any Python language) and wrapping
the entry point so that torch tensors go in as NumPy views and NumPy arrays come back
as tensors. Load it in another process with `SOLFORGE_PLUGINS=tests/bench/toy_language.py`.
"""

from __future__ import annotations

from pathlib import Path

from solforge.bench.build import Built, import_entry
from solforge.bench.languages import LanguagePlugin, register_language
from solforge.spec import Definition, Solution


class _NumpyCall:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, **kwargs):
        import numpy as np
        import torch

        arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        out = self.fn(**arrays)
        outs = out if isinstance(out, tuple) else (out,)
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(o)) for o in outs)
        return tensors if isinstance(out, tuple) else tensors[0]


@register_language
class NumpyishLanguage(LanguagePlugin):
    name = "numpyish"
    env_prefixes = ("NUMPYISH_",)
    prompt_notes = "numpyish: the entry point takes and returns NumPy arrays."

    def build(self, solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
        built = import_entry(solution, workdir)
        built.fn = _NumpyCall(built.fn)
        return built
