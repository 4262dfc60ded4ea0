"""solforge: measure kernels against the hardware's speed of light, and search for faster ones.

The package is laid out as the pipeline (see DESIGN.md): `spec` (the data model),
`hardware` (peaks and calibrated ceilings), `roofline` (FLOP and byte counts, SOL),
`problems` (the built-in suite), `bench` (the hardened harness) and `cli`.
Heavy optional imports (triton, numba, pynvml) stay inside the modules that need them,
so `import solforge` is fast and works on a machine without a GPU.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Deploying winners (solforge.runtime), imported on first use so `import solforge` stays light:
# solforge.kernelize(model, winners=[...]), `with solforge.use_kernels(model, winners=[...])`,
# and the @solforge.apply("definition") decorator.
_RUNTIME = ("kernelize", "use_kernels", "apply")


def __getattr__(name: str):
    if name in _RUNTIME:
        import importlib

        return getattr(importlib.import_module("solforge.runtime.kernelize"), name)
    raise AttributeError(f"module 'solforge' has no attribute '{name}'")
