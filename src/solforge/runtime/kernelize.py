"""`kernelize(model, winners)`, `use_kernels(...)` and `apply(definition)`: winners into PyTorch.

    import solforge
    model = solforge.kernelize(model, winners=["solforge-runs/rmsnorm_h4096-.../"], device="cpu")
    with solforge.use_kernels(model, winners=[...]):      # kernelized inside, original after
        logits = model(ids).logits

    @solforge.apply("rmsnorm_h4096")                        # one's own function, same inputs
    def rmsnorm(hidden_states, weight): ...

Everything that can be checked is checked when `kernelize` runs, never at the first
forward: an unknown definition, a winner whose entry point does not match its
definition, a winner for another device, a model whose dtype the winner was not tuned
for, a definition no module of the model matches, a family with no binding. Each is a
`SpecError` of one line. At run time, a call outside the tuned shapes, of another dtype
or on another device runs the original module (a one-time `KernelFallbackWarning`).

The swapped forwards call `torch.library` custom ops with fake implementations
(`ops.py`), so `torch.compile(model, fullgraph=True)` traces a kernelized model.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solforge.runtime.bindings import Binding, binding_for, families
from solforge.runtime.dispatch import DEFAULT_MARGIN, Dispatcher
from solforge.runtime.ops import KernelOp, kernel_op
from solforge.runtime.winners import Winner, find_definition, load_winners
from solforge.spec import SpecError

MODES = ("inference",)


@dataclass
class Swap:
    """One module whose forward was replaced."""

    definition: str
    qualname: str
    module: Any
    had_own_forward: bool  # the instance had a `forward` attribute before (else the class's was used)
    original: Callable


@dataclass
class Kernels:
    """What `kernelize` did to one model: its dispatchers (one per definition) and swaps."""

    dispatchers: dict[str, Dispatcher] = field(default_factory=dict)
    swaps: list[Swap] = field(default_factory=list)

    def calls(self) -> dict[str, int]:
        """Calls of each definition's kernels so far (the real implementations ran this often)."""
        return {name: sum(op.calls for op in d.ops) for name, d in self.dispatchers.items()}

    def set_enabled(self, enabled: bool, definition: str | None = None) -> None:
        """Turn kernels on or off (all, or one definition's) without unswapping: off means every
        call takes the original forward, with no warning."""
        for name, d in self.dispatchers.items():
            if definition is None or name == definition:
                d.enabled = enabled

    def revert(self, definition: str | None = None) -> list[str]:
        """Put back the original forwards (of all definitions, or one); returns the module names."""
        kept, reverted = [], []
        for s in self.swaps:
            if definition is not None and s.definition != definition:
                kept.append(s)
                continue
            if s.had_own_forward:
                s.module.forward = s.original
            else:
                s.module.__dict__.pop("forward", None)
            reverted.append(s.qualname)
        self.swaps = kept
        for name in list(self.dispatchers):
            if definition is None or name == definition:
                del self.dispatchers[name]
        return reverted

    def modules(self, definition: str) -> list[str]:
        return [s.qualname for s in self.swaps if s.definition == definition]


def kernels_of(model) -> Kernels | None:
    """The `Kernels` record of a kernelized model, or None."""
    return model.__dict__.get("_solforge_kernels")


def _model_dtype_and_device(model) -> tuple[str | None, str]:
    p = next(iter(model.parameters()), None)
    if p is None:
        return None, "cpu"
    return str(p.dtype).replace("torch.", ""), p.device.type


def plan(model, winners: list[Winner], device: str) -> list[tuple[Winner, Binding, list[tuple[str, Any]]]]:
    """For each winner, its binding and the modules it will replace. Raises SpecError (one line)
    for every reason it cannot be applied (see the module docstring)."""
    out = []
    for w in winners:
        where = f"{w.source or w.name}"
        if w.device not in ("any", device):
            raise SpecError(f"{where}: winner '{w.name}' runs on {w.device} ({w.solution.spec.language.value}); "
                            f"this model is on {device}")
        binding = binding_for(w.definition)
        if binding is None:
            raise SpecError(f"{where}: definition '{w.definition.name}' (op_type {w.definition.op_type}): kernelize "
                            f"has no module binding for it (bindings: {', '.join(families())}); use solforge.apply")
        found = binding.find(model)
        fitting, reasons = [], []
        for qualname, module in found:
            why = binding.mismatch(module, w.definition)
            if why is None:
                fitting.append((qualname, module))
            else:
                reasons.append(f"{qualname}: {why}")
        if not fitting:
            detail = reasons[0] if reasons else f"the model has no module of family {binding.family}"
            raise SpecError(f"{where}: definition '{w.definition.name}' fits no module of this model ({detail})")
        model_dtypes = {str(binding.weight_of(m).dtype).replace("torch.", "") for _, m in fitting}
        untuned = sorted(model_dtypes - w.dtypes)
        if w.dtypes and untuned:
            raise SpecError(f"{where}: dtype {untuned[0]}: winner '{w.name}' was tuned for "
                            f"{', '.join(sorted(w.dtypes))} only")
        out.append((w, binding, fitting))
    return out


def kernelize(model, winners: list[str | Path | Winner], device: str | None = None, mode: str = "inference",
              datasets: list[str | Path] = (), margin: float = DEFAULT_MARGIN):
    """Swap `winners` into `model` in place and return it (see the module docstring).

    `winners`: run folders, winner folders, solution JSON paths, or `Winner` objects.
    `device`: "cpu" or "cuda" (default: where the model's parameters are). `datasets`:
    FlashInfer-Trace dataset folders holding definitions that are not built in (a
    profile folder). `margin`: how far from its tuned shapes a winner serves (dispatch.py).
    Calling it again adds to the kernels already there. Raises SpecError, one line.
    """
    if mode not in MODES:
        raise SpecError(f"mode: '{mode}' is not supported (expected one of {', '.join(MODES)}: the kernels have no "
                        "backward)")
    loaded = load_winners(list(winners), datasets)
    _, model_device = _model_dtype_and_device(model)
    device = (device or model_device).split(":")[0]
    if device not in ("cpu", "cuda"):
        raise SpecError(f"device: expected 'cpu' or 'cuda', got '{device}'")
    steps = plan(model, loaded, device)
    record = kernels_of(model) or Kernels()
    by_def: dict[str, list[tuple[Winner, Binding, list]]] = {}
    for w, b, mods in steps:
        by_def.setdefault(w.definition.name, []).append((w, b, mods))
    for name, items in by_def.items():
        ops: list[KernelOp] = [kernel_op(w) for w, _, _ in items]
        dtype = next(iter(sorted(items[0][0].dtypes)), None)
        if name in record.dispatchers:
            record.dispatchers[name].ops.extend(ops)
            record.dispatchers[name].winners.extend(w for w, _, _ in items)
            continue
        dispatcher = Dispatcher(name, ops, dtype, margin, winners=[w for w, _, _ in items])
        record.dispatchers[name] = dispatcher
        binding, modules = items[0][1], items[0][2]
        for qualname, module in modules:
            if binding.prepare is not None:
                binding.prepare(module)
            had_own = "forward" in module.__dict__
            original = module.forward
            module.forward = binding.make_forward(module, dispatcher, original)
            record.swaps.append(Swap(name, qualname, module, had_own, original))
    model.__dict__["_solforge_kernels"] = record
    return model


@contextlib.contextmanager
def use_kernels(model=None, winners: list[str | Path | Winner] = (), device: str | None = None,
                datasets: list[str | Path] = (), margin: float = DEFAULT_MARGIN) -> Iterator[Kernels | None]:
    """Inside the block: `model` kernelized (when given) and `winners` serving `apply`-decorated
    functions; after it, the model's original forwards and the previous winners."""
    loaded = load_winners(list(winners), datasets)
    token = _ACTIVE.copy()
    for w in loaded:
        _ACTIVE.setdefault(w.definition.name, []).append(w)
    before = None
    try:
        if model is not None:
            before = {name: (list(d.ops), list(d.winners))
                      for name, d in (kernels_of(model) or Kernels()).dispatchers.items()}
            kernelize(model, loaded, device=device, datasets=datasets, margin=margin)
        yield kernels_of(model) if model is not None else None
    finally:
        _ACTIVE.clear()
        _ACTIVE.update(token)
        if model is not None:
            record = kernels_of(model)
            for name in list(record.dispatchers) if record else []:
                if name not in (before or {}):
                    record.revert(name)
                else:
                    record.dispatchers[name].ops[:], record.dispatchers[name].winners[:] = before[name]


_ACTIVE: dict[str, list[Winner]] = {}


def apply(definition: str, winners: list[str | Path | Winner] = (), datasets: list[str | Path] = (),
          margin: float = DEFAULT_MARGIN) -> Callable[[Callable], Callable]:
    """Decorator: calls of the function go to the best winner of `definition` for their shapes
    (`winners` given here, or those of an enclosing `use_kernels`), else to the function itself.

    The function takes the definition's inputs, named as the definition names them, and
    returns its outputs. Raises SpecError at decoration time for an unknown definition or a
    function whose parameters differ from the definition's inputs.
    """
    loaded = load_winners(list(winners), datasets)
    defn = loaded[0].definition if loaded else find_definition(definition, [], [Path(d) for d in datasets])
    bad = [w for w in loaded if w.definition.name != definition]
    if bad:
        raise SpecError(f"{bad[0].source}: winner '{bad[0].name}' is of definition '{bad[0].definition.name}', "
                        f"not '{definition}'")
    names = list(defn.inputs)

    def decorate(fn: Callable) -> Callable:
        params = [p.name for p in inspect.signature(fn).parameters.values()]
        if params != names:
            raise SpecError(f"{getattr(fn, '__qualname__', fn)}: signature mismatch with definition '{definition}': "
                            f"parameters ({', '.join(params)}), expected ({', '.join(names)})")
        dispatchers: dict[tuple[int, ...], Dispatcher] = {}

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            import torch

            active = loaded or _ACTIVE.get(definition, [])
            if not active:
                return fn(*args, **kwargs)
            key = tuple(id(w) for w in active)
            if key not in dispatchers:
                dtype = next(iter(sorted(active[0].dtypes)), None)
                dispatchers[key] = Dispatcher(definition, [kernel_op(w) for w in active], dtype, margin,
                                              winners=list(active))
            bound = inspect.signature(fn).bind(*args, **kwargs)
            tensors = dict(bound.arguments)
            from solforge.runtime.ops import var_axes_of

            first = next(t for t in tensors.values() if torch.is_tensor(t))
            floats = [t for t in tensors.values() if torch.is_tensor(t) and t.dtype.is_floating_point]
            op = dispatchers[key].select(var_axes_of(defn, tensors),
                                         str(floats[0].dtype).replace("torch.", "") if floats else None,
                                         first.device.type)
            if op is None:
                return fn(*args, **kwargs)
            return op(*(tensors[n] for n in names))

        wrapper.__solforge_definition__ = definition
        return wrapper

    return decorate
