"""`solforge kernelize`: swap winners into a model, and with --check prove it is still right and faster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from solforge.spec import SpecError

console = Console(width=None if Console().is_terminal else 160)


def check_tables(report: dict) -> list[Table]:
    """The per-kernel verdicts and the tokens/s of a check report (as `report_dict` gives it)."""
    verdicts = Table(title=f"logits: kernelized vs original, {report['prompts']} prompts of {report['batch']}x"
                           f"{report['seq_len']} tokens ({report['dtype']}, max rel <= {report['max_rel_tolerance']:g})",
                     title_justify="left")
    for col in ("definition", "verdict", "modules", "kernel calls", "max abs", "max rel", "top-1", "decisive top-1"):
        verdicts.add_column(col, justify="left" if col in ("definition", "verdict") else "right")
    for k in report["kernels"]:
        e = k["error"] or {}
        verdicts.add_row(k["definition"], ("PASS" if k["passed"] else "FAIL, reverted: ") + ("" if k["passed"] else k["reason"]),
                         str(k["modules"]), str(k["calls"]), f"{e.get('max_abs', 0):.4g}", f"{e.get('max_rel', 0):.4g}",
                         f"{e.get('top1', 0):.3f}", f"{e.get('decisive_top1', 0):.3f}")
    out = [verdicts]
    if report.get("speed"):
        from solforge.runtime.check import speedup_cell

        speed = Table(title="tokens/s, side by side in one process (median of rounds); speedup over eager: median of "
                      "the rounds' ratios [95% interval]", title_justify="left")
        for col in ("variant", "prefill tokens/s", "decode tokens/s", "prefill ms", "decode step ms",
                    "prefill vs eager", "decode vs eager"):
            speed.add_column(col, justify="left" if col == "variant" else "right")
        for s in report["speed"]:
            speed.add_row(s["variant"], f"{s['prefill_tokens_s']:.1f}", f"{s['decode_tokens_s']:.2f}",
                          f"{s['prefill_ms']:.2f}", f"{s['decode_step_ms']:.2f}", speedup_cell(s, "prefill"),
                          speedup_cell(s, "decode"))
        out.append(speed)
    return out


def kernelize(
    target: Annotated[str, typer.Argument(help="The model, as for `solforge profile`.")],
    winners: Annotated[list[str], typer.Option("--winners", help="Run folders, winner folders or solution JSONs (repeatable).")],
    dataset: Annotated[Optional[list[Path]], typer.Option(help="Dataset folder(s) with definitions that are not built in "
                                                                "(a profile folder).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="The model's dtype.")] = "bfloat16",
    layers: Annotated[Optional[int], typer.Option(help="Keep the first N decoder layers.")] = None,
    batch: Annotated[int, typer.Option(help="Sequences per forward (check).")] = 1,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence (check).")] = 64,
    check: Annotated[bool, typer.Option("--check", help="Compare logits with the original and measure tokens/s.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="Also run the kernelized model under torch.compile(fullgraph=True) "
                                                            "(and, with --check, time the torch.compile variants).")] = False,
    prompts: Annotated[int, typer.Option(help="Prompts of the logit check.")] = 4,
    rounds: Annotated[int, typer.Option(help="Speed rounds of the check (0: no speed measurement).")] = 5,
    out: Annotated[Optional[Path], typer.Option(help="Write the check report (JSON) here.")] = None,
) -> None:
    """Kernelize a model with evolved winners; --check proves it against the original."""
    import json

    import torch

    from solforge.profile.targets import load_target
    from solforge.runtime.check import check_model, report_dict
    from solforge.runtime.kernelize import kernelize as do_kernelize
    from solforge.runtime.kernelize import kernels_of

    if device not in ("cpu", "cuda"):
        raise SpecError(f"--device: expected cpu or cuda, got '{device}'")
    built = load_target(target, device=device, dtype=dtype, layers=layers, batch=batch, seq_len=seq_len)
    datasets = list(dataset or [])
    if not check:
        model = do_kernelize(built.model, winners, device=device, datasets=datasets)
        record = kernels_of(model)
        runner = torch.compile(model, fullgraph=True) if compile else model
        with torch.no_grad():  # one forward, to show the kernels run (the call holds the model, kernelized in place)
            if compile and built.make_inputs is not None:
                runner(**built.make_inputs(0), use_cache=False)
            else:
                built.call()
        for name, n in record.calls().items():
            console.print(f"{name}: {len(record.modules(name))} modules, {n} kernel calls in one forward"
                          + (" (torch.compile fullgraph)" if compile else ""))
        return
    report, _ = check_model(built.model, winners, device=device, batch=batch, seq_len=seq_len, prompts=prompts,
                            rounds=rounds, compile=compile, datasets=datasets)
    data = report_dict(report)
    for table in check_tables(data):
        console.print(table)
    if report.reverted:
        console.print(f"[red]reverted[/red]: {', '.join(report.reverted)} (failed the check)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {out}")
    if report.reverted:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("kernelize")(kernelize)
