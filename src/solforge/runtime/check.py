"""The end-to-end check: the original model against its kernelized copy, on the same inputs.

Correctness, per kernel and then all together, over N prompts of random token ids:

- max abs error of the logits, and max rel error = max |kernelized - original| / max |original|;
- top-1 agreement: the fraction of positions whose argmax token is the same;
- decisive top-1 agreement: the same fraction over the positions where the original's
  best token leads its runner-up by more than twice the tolerated error (a model with
  random weights has near-ties that any rounding flips; a flip of a clear lead is a bug).

A kernel passes when max rel error <= the dtype's `max_rel` and every decisive position
agrees. One that fails is reverted (the copy gets its original forwards back) and named.

Speed, side by side in one process: eager, torch.compile, kernelized, kernelized +
torch.compile, each timed in rounds that take the variants in turn (so a busy machine
slows all alike); prefill tokens/s = B*T / median prefill time, decode tokens/s =
B / median time of one single-token step over a cache of T tokens. A prefill computes
the logits of the last position only (`logits_to_keep=1`, as transformers' `generate`
does), where the model's forward takes that argument; otherwise of every position.

Each variant is also compared with eager round by round: its speedup in a round is
eager's time over its time in that round (measured seconds apart, so a slow spell of the
machine divides out), and the report gives the median speedup over the rounds with a
95% confidence interval of that median (`median_interval`). A variant is faster than
eager only where the whole interval lies above 1 (`speed_verdict`).
"""

from __future__ import annotations

import copy
import inspect
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solforge.runtime.kernelize import kernelize, kernels_of
from solforge.runtime.winners import Winner, load_winners

# Per model dtype: the largest tolerated max |err| / max |logit|. bfloat16 keeps 8 bits of
# mantissa (relative step 2^-8 = 0.4%): a norm or an activation rounded differently per layer
# moves logits by a few steps; 5% allows that over a few layers and catches a wrong kernel
# (a wrong eps, a dropped weight or a swapped gate/up moves them by O(1)).
TOLERANCES: dict[str, float] = {"bfloat16": 5e-2, "float16": 1e-2, "float32": 1e-4}


@dataclass
class LogitError:
    """Original vs kernelized logits over the prompts."""

    max_abs: float
    max_rel: float
    top1: float  # fraction of positions with the same argmax
    decisive_top1: float  # the same over positions with a clear lead (module docstring)
    positions: int
    decisive_positions: int


@dataclass
class KernelVerdict:
    """One definition's kernels checked alone."""

    definition: str
    solutions: list[str]
    modules: int  # modules swapped
    calls: int  # kernel calls during its check: proof it ran
    error: LogitError | None
    passed: bool
    reason: str


@dataclass
class SpeedRow:
    """One variant's throughput: medians over the rounds; and its speedup over eager
    (eager's time / its time, > 1 is faster), median over the rounds of each round's
    ratio, with the 95% interval of that median (None with fewer than 6 rounds)."""

    variant: str
    prefill_tokens_s: float | None
    decode_tokens_s: float | None
    prefill_ms: float | None
    decode_step_ms: float | None
    rounds: int
    prefill_speedup: float | None = None
    prefill_speedup_ci: tuple[float, float] | None = None
    decode_speedup: float | None = None
    decode_speedup_ci: tuple[float, float] | None = None


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median of `values`: the order
    statistics (k, n + 1 - k) with the largest k such that P(Binomial(n, 1/2) < k) <=
    (1 - confidence) / 2 (the sign-test interval; e.g. Hollander, Wolfe & Chicken,
    "Nonparametric Statistical Methods", 3rd ed., section 3.6). None when n is too small
    for `confidence` (n < 6 at 95%)."""
    n = len(values)
    alpha, k, below = (1.0 - confidence) / 2.0, 0, 0.0
    while k < n:
        below_next = below + math.comb(n, k) / 2.0**n  # P(B < k + 1)
        if below_next > alpha:
            break
        below, k = below_next, k + 1
    if k == 0:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]


def speed_verdict(speedup: float | None, interval: tuple[float, float] | None) -> str:
    """'faster' or 'slower' than eager when the whole interval is on that side of 1,
    'within noise' when it holds 1, 'too few rounds' without one."""
    if speedup is None:
        return "no figure"
    if interval is None:
        return "too few rounds"
    if interval[0] > 1.0:
        return "faster"
    if interval[1] < 1.0:
        return "slower"
    return "within noise"


@dataclass
class CheckReport:
    dtype: str
    max_rel_tolerance: float
    prompts: int
    batch: int
    seq_len: int
    kernels: list[KernelVerdict]
    overall: LogitError | None  # all passing kernels together
    reverted: list[str]  # definitions whose kernels failed and were reverted
    speed: list[SpeedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reverted and bool(self.kernels)


def crop_to(cache, length: int) -> None:
    """Cut a transformers KV cache back to `length` tokens (newer transformers take the
    number to remove as a negative count, older ones the length to keep)."""
    extra = cache.get_seq_length() - length
    if extra <= 0:
        return
    try:
        cache.crop(-extra)
    except ValueError:
        cache.crop(length)


def _logits(model, ids):
    import torch

    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False)
    return (out.logits if hasattr(out, "logits") else out[0]).float()


def compare_logits(ref_list, out_list, max_rel_tol: float) -> LogitError:
    """Compare lists of (B, T, V) float logits; see the module docstring."""
    import torch

    max_abs, scale, agree, total, d_agree, d_total = 0.0, 0.0, 0, 0, 0, 0
    for ref, out in zip(ref_list, out_list):
        max_abs = max(max_abs, (out - ref).abs().max().item())
        scale = max(scale, ref.abs().max().item())
    lead = 2.0 * max_rel_tol * scale
    for ref, out in zip(ref_list, out_list):
        same = ref.argmax(-1) == out.argmax(-1)
        top2 = torch.topk(ref, 2, dim=-1).values
        clear = (top2[..., 0] - top2[..., 1]) > lead
        agree += int(same.sum())
        total += same.numel()
        d_agree += int((same & clear).sum())
        d_total += int(clear.sum())
    return LogitError(max_abs, max_abs / scale if scale > 0 else 0.0, agree / max(total, 1),
                      d_agree / d_total if d_total else 1.0, total, d_total)


def _cache_key(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _time_ms(fn, sync) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1e3


def measure_speed(variants: dict[str, Any], vocab: int, *, batch: int, seq_len: int, decode_steps: int, rounds: int,
                  device: str) -> list[SpeedRow]:
    """Tokens/s of each variant (name -> callable model), interleaved rounds; see the module docstring."""
    import torch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=g).to(device)  # (B, T)
    step = torch.randint(0, vocab, (batch, 1), generator=g).to(device)  # (B, 1)
    state = {}
    with torch.no_grad():
        for name, m in variants.items():  # warm-up: compiles happen here, outside the timed rounds
            base = getattr(m, "_orig_mod", m)
            key = _cache_key(base)
            last = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}
            m(input_ids=ids, use_cache=False, **last)
            out = m(input_ids=ids, use_cache=True)
            cache = getattr(out, key, None) if hasattr(out, key) else getattr(out, "past_key_values", None)
            state[name] = (key, cache, last)
            for _ in range(2):
                m(input_ids=step, use_cache=True, **{key: cache})
                crop_to(cache, seq_len)
        prefill: dict[str, list[float]] = {n: [] for n in variants}
        decode: dict[str, list[float]] = {n: [] for n in variants}
        for _ in range(rounds):
            for name, m in variants.items():
                key, cache, last = state[name]
                prefill[name].append(_time_ms(lambda: m(input_ids=ids, use_cache=False, **last), sync))
                steps = []
                for _ in range(decode_steps):
                    steps.append(_time_ms(lambda: m(input_ids=step, use_cache=True, **{key: cache}), sync))
                    crop_to(cache, seq_len)
                decode[name].append(statistics.median(steps))
    rows = []
    base = next(iter(variants))  # eager
    for name in variants:
        p = statistics.median(prefill[name]) if prefill[name] else None
        d = statistics.median(decode[name]) if decode[name] else None
        row = SpeedRow(name, batch * seq_len / (p / 1e3) if p else None, batch / (d / 1e3) if d else None,
                       p, d, rounds)
        if name != base and rounds > 0:
            pre = [e / v for e, v in zip(prefill[base], prefill[name])]
            dec = [e / v for e, v in zip(decode[base], decode[name])]
            row.prefill_speedup, row.prefill_speedup_ci = statistics.median(pre), median_interval(pre)
            row.decode_speedup, row.decode_speedup_ci = statistics.median(dec), median_interval(dec)
        rows.append(row)
    return rows


def check_model(model, winners: list[str | Path | Winner], *, device: str = "cpu", batch: int = 1, seq_len: int = 64,
                prompts: int = 4, rounds: int = 5, decode_steps: int = 8, compile: bool = True,
                datasets: list[str | Path] = (), seed: int = 0) -> tuple[CheckReport, Any]:
    """Check `winners` in a kernelized copy of `model` (see the module docstring).

    Returns the report and the kernelized copy (failing kernels reverted). `rounds=0`
    skips the speed measurement; `compile=False` leaves out the torch.compile variants.
    Raises SpecError (one line) for what `kernelize` rejects.
    """
    import torch

    loaded = load_winners(list(winners), datasets)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    tol = TOLERANCES.get(dtype, 1e-4)
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 256)
    kmodel = copy.deepcopy(model)
    kernelize(kmodel, loaded, device=device, datasets=datasets)
    record = kernels_of(kmodel)
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, vocab, (batch, seq_len), generator=g).to(device) for _ in range(prompts)]  # (B, T) each
    refs = [_logits(model, ids) for ids in inputs]
    verdicts, reverted = [], []
    for name in list(record.dispatchers):
        before = record.calls().get(name, 0)
        record.set_enabled(False)
        record.set_enabled(True, name)
        outs = [_logits(kmodel, ids) for ids in inputs]
        calls = record.calls()[name] - before
        err = compare_logits(refs, outs, tol)
        sols = [w.name for w in record.dispatchers[name].winners]
        if calls == 0:
            ok, why = False, "the kernel never ran (every call fell back: shapes, dtype or device)"
        elif err.max_rel > tol:
            ok, why = False, f"max rel error {err.max_rel:.3g} > {tol:g}"
        elif err.decisive_top1 < 1.0:
            ok, why = False, f"top-1 changed at {err.decisive_positions - round(err.decisive_top1 * err.decisive_positions)} positions with a clear lead"
        else:
            ok, why = True, "within tolerance"
        verdicts.append(KernelVerdict(name, sols, len(record.modules(name)), calls, err, ok, why))
        if not ok:
            reverted.append(name)
    for name in reverted:
        record.revert(name)
    record.set_enabled(True)
    overall = compare_logits(refs, [_logits(kmodel, ids) for ids in inputs], tol) if record.dispatchers else None
    report = CheckReport(dtype, tol, prompts, batch, seq_len, verdicts, overall, reverted)
    if rounds > 0:
        variants: dict[str, Any] = {"eager": model}
        if compile:
            variants["torch.compile"] = torch.compile(model)
        variants["kernelized"] = kmodel
        if compile:
            variants["kernelized + torch.compile"] = torch.compile(kmodel)
        report.speed = measure_speed(variants, vocab, batch=batch, seq_len=seq_len, decode_steps=decode_steps,
                                     rounds=rounds, device=device)
    return report, kmodel


def speedup_cell(row: dict[str, Any], stage: str) -> str:
    """A report row's speedup over eager in `stage` ('prefill' or 'decode') for a table:
    "1.031x [1.012, 1.050] faster", "-" for eager itself."""
    speedup, ci = row.get(f"{stage}_speedup"), row.get(f"{stage}_speedup_ci")
    if speedup is None:
        return "-"
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return f"{speedup:.3f}x{interval} {speed_verdict(speedup, tuple(ci) if ci else None)}"


def report_dict(report: CheckReport) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(report)
    data["passed"] = report.passed
    return data
