"""`solforge profile`: a model's time by fusable candidate, each mapped to a definition, with Amdahl and SOL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from solforge.spec import SpecError

console = Console(width=None if Console().is_terminal else 160)


def profile_table(result) -> Table:
    """The ranked candidates of a ProfileResult (or its profile.json dict): times per forward in ms."""
    rows = result["rows"] if isinstance(result, dict) else [r.__dict__ for r in result.rows]
    get = result.get if isinstance(result, dict) else lambda k: getattr(result, k)
    table = Table(title=f"{get('target')}: {get('stage')}, {get('tokens_per_call')} tokens per forward, "
                        f"{get('model_ms'):.2f} ms per forward (profiled), {get('wall_ms'):.2f} ms wall",
                  title_justify="left")
    for col in ("candidate", "share", "Amdahl 1/(1-f)", "definition", "SOL ms", "measured ms", "gain at SOL"):
        table.add_column(col, justify="left" if col in ("candidate", "definition") else "right")
    for r in rows:
        defn = f"{r['definition']} ({r['source']})" if r["definition"] else "-"
        table.add_row(r["label"], f"{r['share']:.1%}", f"{r['amdahl_ceiling']:.3f}x", defn,
                      "-" if r["sol_ms"] is None else f"{r['sol_ms']:.4f}", f"{r['measured_ms']:.3f}",
                      "-" if r["gain_at_sol"] is None else f"{r['gain_at_sol']:.3f}x")
    table.add_row("other (framework, views, masks)", f"{get('other_ms') / get('model_ms'):.1%}" if get("model_ms") else "-",
                  "", "-", "-", f"{get('other_ms'):.3f}", "-")
    return table


def profile(
    target: Annotated[str, typer.Argument(help="A transformers model id (config only, from the local HF cache), a "
                                               "shipped config (llama-3.1-8b, qwen2.5-7b, mixtral-8x7b), a config.json, "
                                               "or a factory path.py:fn returning (model, example_inputs).")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="bfloat16, float16 or float32 (transformers models).")] = "bfloat16",
    batch: Annotated[int, typer.Option(help="Sequences per forward.")] = 1,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence (prefill), or cached tokens (decode).")] = 128,
    input_shapes: Annotated[Optional[str], typer.Option(help="NAME=AxB[,NAME=...]: input shapes instead of "
                                                             "--batch/--seq-len (input_ids for transformers models).")] = None,
    stage: Annotated[str, typer.Option(help="prefill or decode.")] = "prefill",
    layers: Annotated[Optional[int], typer.Option(help="Keep the first N decoder layers (a truncated model).")] = None,
    iterations: Annotated[int, typer.Option(help="Profiled forwards, after 2 warm-up ones.")] = 5,
    out: Annotated[Path, typer.Option(help="Folder for profile.json and the new definitions (a dataset).")] = Path("solforge-profile"),
) -> None:
    """Profile a model, rank fusable candidates by share of time, map each to a definition at the real shapes."""
    from solforge.profile.report import profile_model
    from solforge.profile.targets import parse_input_shapes

    if device not in ("cpu", "cuda"):
        raise SpecError(f"--device: expected cpu or cuda, got '{device}'")
    if iterations < 1:
        raise SpecError("--iterations: expected a positive number")
    shapes = parse_input_shapes(input_shapes) if input_shapes else None
    result = profile_model(target, device=device, dtype=dtype, layers=layers, batch=batch, seq_len=seq_len,
                           stage=stage, input_shapes=shapes, iterations=iterations, out=out)
    console.print(profile_table(result))
    if device == "cuda" and result.model_ms <= 0:
        console.print("the profiler recorded no CUDA kernel time (is CUPTI missing or not permitted?); "
                      "rerun with KINETO_LOG_LEVEL=4 to see libkineto's errors, which solforge hides by default")
    console.print(f"SOL at {result.peaks or 'no peaks (run solforge calibrate)'}; gain at SOL = T / (T - t + t_SOL)")
    if result.new_definitions:
        console.print(f"new definitions ({len(result.new_definitions)}): {', '.join(sorted(result.new_definitions))}; "
                      f"evolve one with `solforge evolve NAME --dataset {out}`")
    console.print(f"wrote {out / 'profile.json'}")


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
