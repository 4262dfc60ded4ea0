"""Per-shape dispatch: which winner's op serves a call, or None for the original code.

A winner serves the shapes it was proven on, and shapes near them: for every var axis,
between its smallest tuned value divided by `margin` and its largest times `margin`.
Among the winners whose range holds the call, the one with the nearest tuned workload
wins (distance: the sum over var axes of |log2(call / tuned)|). A call outside every
range, of another dtype, or on another device falls back to the original module, with a
warning the first time each reason is seen.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from solforge.runtime.ops import KernelOp

DEFAULT_MARGIN = 4.0  # a winner serves 1/4x to 4x the var-axis sizes it was tuned on


class KernelFallbackWarning(UserWarning):
    """A call was served by the original module instead of a kernel (warned once per reason)."""


@dataclass
class Dispatcher:
    """The ops of one definition and the rule that picks one per call."""

    definition: str
    ops: list[KernelOp]
    dtype: str | None  # the definition's float dtype (None when it has no float input)
    margin: float = DEFAULT_MARGIN
    enabled: bool = True
    fallbacks: int = 0  # calls served by the original code
    warned: set[str] = field(default_factory=set)
    winners: list = field(default_factory=list)  # the Winner of each op, with the shapes it serves here

    def select(self, axes: dict[str, int], dtype: str | None, device_type: str) -> KernelOp | None:
        """The op for a call with var-axis values `axes`, float dtype `dtype` on `device_type`."""
        if not self.enabled:
            return None
        if self.dtype is not None and dtype is not None and dtype != self.dtype:
            return self._fallback(f"dtype {dtype}: the kernels of '{self.definition}' were tuned for {self.dtype}")
        best, best_d = None, math.inf
        winners = self.winners or [op.winner for op in self.ops]  # an op is shared; its buckets are this use's
        for op, winner in zip(self.ops, winners):
            dev = winner.device
            if dev != "any" and dev != device_type:
                continue
            d = _distance(axes, winner.buckets, self.margin)
            if d < best_d:
                best, best_d = op, d
        if best is None:
            devices = sorted({w.device for w in winners})
            if all(d not in ("any", device_type) for d in devices):
                return self._fallback(f"device {device_type}: the kernels of '{self.definition}' run on "
                                      f"{', '.join(devices)}")
            return self._fallback(f"shape {axes}: outside the shapes the kernels of '{self.definition}' were "
                                  f"tuned on (x{self.margin:g} margin)")
        return best

    def _fallback(self, reason: str) -> None:
        self.fallbacks += 1
        if reason not in self.warned:
            self.warned.add(reason)
            import torch

            if not torch.compiler.is_compiling():  # a warning inside a traced graph would break it
                warnings.warn(f"solforge: {reason}; using the original module", KernelFallbackWarning, stacklevel=4)
        return None


def _distance(axes: dict[str, int], buckets: list[dict[str, int]], margin: float) -> float:
    """Nearest tuned workload's log distance, or inf when `axes` lies outside the tuned range."""
    if not buckets:
        return 0.0  # a winner without traces was tuned on nothing in particular: it serves every shape
    for name, value in axes.items():
        tuned = [b[name] for b in buckets if name in b]
        if not tuned:
            continue
        if not (min(tuned) / margin <= value <= max(tuned) * margin):
            return math.inf
    best = math.inf
    for b in buckets:
        d = sum(abs(math.log2(max(int(axes[k]), 1) / max(int(v), 1))) for k, v in b.items() if k in axes)
        best = min(best, d)
    return best
