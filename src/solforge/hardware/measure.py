"""How a calibration figure is timed: repeated samples, their spread, and a re-run when unstable.

A figure is timed in rounds of `repeats` samples after one warm-up call. A round is
stable when its interquartile range is at most `max_relative_iqr` of its median and it
has at least `min_samples` samples; an unstable round is run again, up to `attempts`
rounds in all. The round kept is the first stable one, else the one with the smallest
relative IQR, marked unstable. Quartiles interpolate linearly between order statistics
(numpy's default, and `solforge.bench.timing`'s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

# Thresholds of a stable CPU figure: an IQR over 10% of the median means other work
# shared the cores during the round; fewer than 5 samples give no quartiles worth reading.
MAX_RELATIVE_IQR = 0.10
MIN_SAMPLES = 5


class Spread(BaseModel):
    """The spread of one figure's kept round of samples, in milliseconds."""

    median_ms: float = Field(ge=0)
    iqr_ms: float = Field(ge=0, description="75th minus 25th percentile.")
    min_ms: float = Field(ge=0)
    count: int = Field(ge=1, description="Samples in the kept round.")
    attempts: int = Field(default=1, ge=1, description="Rounds run: 1, or more when a round was unstable.")
    stable: bool = Field(description="iqr_ms / median_ms <= the threshold and count >= the minimum.")

    @property
    def relative_iqr(self) -> float:
        """iqr_ms / median_ms (inf for a zero median)."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf


def quantile(sorted_samples: list[float], p: float) -> float:
    """The p-quantile (0 <= p <= 1) of ascending `sorted_samples`, interpolating linearly between order statistics."""
    assert sorted_samples and 0.0 <= p <= 1.0
    pos = p * (len(sorted_samples) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (pos - lo)


def spread_of(
    samples_ms: list[float],
    *,
    attempts: int = 1,
    max_relative_iqr: float = MAX_RELATIVE_IQR,
    min_samples: int = MIN_SAMPLES,
) -> Spread:
    """Median, IQR, min and count of `samples_ms` (ms), and whether they pass the stability thresholds.

    Raises ValueError for no samples.
    """
    if not samples_ms:
        raise ValueError("no samples")
    s = sorted(samples_ms)
    median, iqr = quantile(s, 0.5), quantile(s, 0.75) - quantile(s, 0.25)
    relative = iqr / median if median > 0 else math.inf
    return Spread(median_ms=median, iqr_ms=iqr, min_ms=s[0], count=len(s), attempts=attempts,
                  stable=relative <= max_relative_iqr and len(s) >= min_samples)


def timed_rounds(
    round_ms: Callable[[], list[float]],
    *,
    attempts: int,
    max_relative_iqr: float = MAX_RELATIVE_IQR,
    min_samples: int = MIN_SAMPLES,
) -> tuple[list[float], Spread]:
    """Run `round_ms()` (one round of samples, ms) until a round is stable, at most `attempts` times.

    Returns the kept round's samples and its spread (`attempts` = rounds run). The kept
    round is the first stable one, else the one with the smallest relative IQR.
    """
    assert attempts >= 1
    best: tuple[list[float], Spread] | None = None
    for attempt in range(1, attempts + 1):
        samples = round_ms()
        spread = spread_of(samples, attempts=attempt, max_relative_iqr=max_relative_iqr, min_samples=min_samples)
        if best is None or spread.relative_iqr < best[1].relative_iqr:
            best = (samples, spread)
        if spread.stable:
            break
    assert best is not None
    samples, spread = best
    return samples, spread.model_copy(update={"attempts": attempt})


def perf_counter_round(fn: Callable[..., Any], *args: Any, repeats: int, **kwargs: Any) -> list[float]:
    """One warm-up call of `fn(*args, **kwargs)`, then `repeats` calls each timed with `time.perf_counter`; ms."""
    fn(*args, **kwargs)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples
