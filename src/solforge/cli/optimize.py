"""`solforge optimize`: profile -> evolve the top candidates -> kernelize -> check, in one resumable folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from solforge.spec import SpecError

console = Console(width=None if Console().is_terminal else 160)


def optimize(
    target: Annotated[str, typer.Argument(help="The model, as for `solforge profile`.")],
    budget: Annotated[Optional[str], typer.Option(help="Wall-clock budget of all the searches, e.g. 30m.")] = None,
    top: Annotated[int, typer.Option(help="Evolve the K largest candidates that have a seed kernel and a binding.")] = 3,
    max_candidates: Annotated[Optional[int], typer.Option(help="Stop each search after N evaluated candidates.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="The run folder (default solforge-optimize/<model>); run the "
                                                     "same command again to resume it.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="The model's dtype.")] = "bfloat16",
    layers: Annotated[Optional[int], typer.Option(help="Keep the first N decoder layers (a truncated model).")] = None,
    batch: Annotated[int, typer.Option(help="Sequences per forward.")] = 1,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = 128,
    prompts: Annotated[int, typer.Option(help="Prompts of the logit check.")] = 4,
    rounds: Annotated[int, typer.Option(help="Speed rounds of the check (0: none).")] = 5,
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="Time the torch.compile variants too.")] = True,
    search_baselines: Annotated[str, typer.Option(
        help="What each kernel search times beside its candidates: eager, or eager,compile (torch.compile per "
             "kernel; on a CPU an inductor C++ build per workload shape, minutes per search). The check times "
             "torch.compile on the whole model either way.")] = "eager",
) -> None:
    """The whole chain for one model: profile, evolve, kernelize, check."""
    from solforge.cli.evolve import parse_duration_s
    from solforge.cli.kernelize import check_tables
    from solforge.cli.profile import profile_table
    from solforge.profile.targets import slugify
    from solforge.runtime.optimize import OptimizeConfig
    from solforge.runtime.optimize import optimize as run_optimize

    if device not in ("cpu", "cuda"):
        raise SpecError(f"--device: expected cpu or cuda, got '{device}'")
    if top < 1:
        raise SpecError("--top: expected a positive number")
    if max_candidates is not None and max_candidates < 1:
        raise SpecError("--max-candidates: expected a positive number")
    from solforge.search.config import BASELINES

    names = tuple(b.strip() for b in search_baselines.split(",") if b.strip())
    if not names or any(b not in BASELINES for b in names) or "eager" not in names:
        raise SpecError(f"--search-baselines: expected eager or eager,compile, got '{search_baselines}'")
    out = out or Path("solforge-optimize") / (slugify(target.split("/")[-1]) + (f"-{layers}l" if layers else ""))
    config = OptimizeConfig(device=device, dtype=dtype, layers=layers, batch=batch, seq_len=seq_len,
                            budget_s=parse_duration_s(budget) if budget else None, max_candidates=max_candidates,
                            top=top, prompts=prompts, rounds=rounds, compile=compile, search_baselines=names)
    result = run_optimize(target, out, config, log=lambda line: console.print(f"[dim]{line}[/dim]"))
    console.print(profile_table(result.profile))
    for c in result.selected:
        console.print(f"evolved {c['definition']} (share {c['share']:.1%}, budget {c.get('budget_s') or 0:.0f} s): "
                      f"{'winner' if c.get('winner') else 'no winner'}")
    for s in result.skipped:
        console.print(f"not searched: {s['definition']}: {s['reason']}")
    if result.check:
        for table in check_tables(result.check):
            console.print(table)
    else:
        console.print("no winner to kernelize: nothing checked")
    if result.resumed:
        console.print(f"resumed: read back {', '.join(result.resumed)}")
    console.print(f"everything is in {out} (summary.md, profile/, runs/, check.json)")
    if result.check and result.check.get("reverted"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize)
