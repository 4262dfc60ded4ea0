"""`solforge eval [PATH]`: evaluate the candidate of an agent workspace (made by the
`agent-cli` operator) on its search workloads. Parses and prints; the evaluation is
`solforge.agent.external.eval_workspace`. Exits 0 when every workload passed, 1 when
any failed, 2 on a missing or malformed workspace file.

Also runnable without the `solforge` command: `python -m solforge.cli.eval [PATH]`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def _evaluate_and_print(path: str | Path, device: str | None) -> int:
    from solforge.agent.external import SOLUTION_DIR, eval_workspace

    result = eval_workspace(path, device=device)
    print(f"{result.definition} on {result.device}: {result.language} candidate from {SOLUTION_DIR}/")
    print(result.text)
    return 0 if result.passed else 1


def eval_command(
    path: Annotated[Path, typer.Argument(help="The agent workspace (definition.json, solution/).")] = Path("."),
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: the workspace's device).")] = None,
) -> None:
    """Evaluate the workspace's candidate on its search workloads; results go to .solforge/results.json."""
    raise typer.Exit(_evaluate_and_print(path, device))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def _main(argv: list[str]) -> int:
    from solforge.spec import SpecError

    try:
        return _evaluate_and_print(argv[0] if argv else ".", None)
    except SpecError as exc:
        print(f"solforge eval: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
