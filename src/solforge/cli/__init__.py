"""The `solforge` command: one module per subcommand, each thin over the library.

Each subcommand module defines `register(app)`, which adds its command(s) to the app.
A user's mistake (a `SpecError`) ends in one line on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import typer

from solforge.spec import SpecError

app = typer.Typer(
    name="solforge",
    help="Measure kernels against the hardware's speed of light (SOL), and search for faster ones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SUBCOMMANDS = ("bench", "calibrate", "compile", "eval", "evolve", "export", "import_", "kernelize", "optimize", "problems", "profile", "report", "runs")


_registered = False


def _register_all() -> None:
    global _registered
    if not _registered:
        for name in SUBCOMMANDS:
            importlib.import_module(f"solforge.cli.{name}").register(app)
        _registered = True


def main(argv: list[str] | None = None) -> int:
    """Run the `solforge` command with `argv` (default: sys.argv[1:]); returns the exit code."""
    _register_all()
    try:
        from solforge.plugins import load_plugins

        load_plugins()  # device kinds and languages named in $SOLFORGE_PLUGINS, before any flag is read
        app(args=argv, prog_name="solforge")
    except SystemExit as exc:  # typer ends every run with sys.exit
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except SpecError as exc:
        print(f"solforge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("solforge: interrupted", file=sys.stderr)
        return 130
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def console_main() -> None:
    """The `solforge` executable: SIGTERM (`timeout`, `kill`) and SIGHUP (a closed
    terminal) end a command the way Ctrl-C does, so that its clean-up runs and no
    process it started is left behind. The torch profiler's log lines (`solforge profile`,
    `optimize`) are off unless KINETO_LOG_LEVEL is set (`processes.KINETO_LOG_LEVEL`)."""
    from solforge.bench.processes import KINETO_LOG_LEVEL

    os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_LOG_LEVEL)
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, _interrupt)
    sys.exit(main())
