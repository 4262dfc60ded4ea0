"""What a kernelized module costs per call beyond its kernel: one module of a kernelized
model, timed three ways in one process, interleaved in rounds:

- eager: the module's own forward (the kernels switched off);
- kernelized: the module's kernelized forward (shape dispatch, then the kernel), with
  eager calls going straight to the kernel's implementation (the default), and again
  with every call through torch's custom-op dispatch (`--through-op` adds that row,
  which is how eager calls ran before 300cd18);
- kernel: the winner's entry point called directly on the same tensors (destination
  passing style: the output allocated once, outside the timing).

Warm caches, as in a model's forward (the inputs were just written); median of
`--calls` calls per round, median over `--rounds` rounds, in microseconds. No flush:
this is the per-call overhead a model sees, not the kernel's cold-cache time the search
judged it on.

    .venv/bin/python benchmarks/kernelize_overhead.py llama-3.1-8b --layers 2 --tokens 64 \\
        --winners RUN_DIR [--module model.layers.0.input_layernorm] [--through-op]
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time


def _median_us(fn, calls: int) -> float:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--winners", action="append", required=True, help="a run folder with an RMSNorm winner")
    ap.add_argument("--module", default="model.layers.0.input_layernorm")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--through-op", action="store_true", help="also time calls through torch's custom-op dispatch")
    args = ap.parse_args()

    import inspect

    import torch

    from solforge.profile.targets import load_target
    from solforge.runtime.kernelize import kernelize, kernels_of

    winners = [p for w in args.winners for p in (glob.glob(w) or [w])]
    model = load_target(args.target, layers=args.layers, seq_len=args.tokens).model
    kernelize(model, winners, device="cpu")
    record = kernels_of(model)
    module = model.get_submodule(args.module)
    name = next(d for d in record.dispatchers if args.module in record.modules(d))
    op = record.dispatchers[name].ops[0]
    hidden = module.weight.shape[0]
    x = torch.randn(1, args.tokens, hidden, dtype=module.weight.dtype)
    names = list(inspect.signature(op.entry).parameters)
    out = torch.empty(args.tokens, hidden, dtype=x.dtype)
    direct = dict(zip(names, [x.reshape(-1, hidden), module.weight, out]))
    real = op.real
    rows: dict[str, list[float]] = {"eager": [], "kernelized": [], "kernel": []}
    if args.through_op:
        rows["kernelized, through the custom op"] = []
    print(f"{args.target} ({args.layers} layers), {args.module} ({name}), {args.tokens} tokens, "
          f"{args.rounds} rounds x {args.calls} calls")
    with torch.no_grad():
        for fn in (lambda: module(x), lambda: op.entry(**direct)):  # warm-up: numba loads or compiles here
            for _ in range(20):
                fn()
        for _ in range(args.rounds):
            record.set_enabled(False)
            rows["eager"].append(_median_us(lambda: module(x), args.calls))
            record.set_enabled(True)
            rows["kernelized"].append(_median_us(lambda: module(x), args.calls))
            rows["kernel"].append(_median_us(lambda: op.entry(**direct), args.calls))
            if args.through_op:
                op.real = None
                try:
                    rows["kernelized, through the custom op"].append(_median_us(lambda: module(x), args.calls))
                finally:
                    op.real = real
    print("| call | median us (rounds) | per round |")
    print("| --- | ---: | --- |")
    for label, values in rows.items():
        print(f"| {label} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()
