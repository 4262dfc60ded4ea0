"""Language plugins: what the harness knows of each solution language, one file each.

A plugin (`LanguagePlugin` subclass, registered with `@register_language`) owns, for its
language:

- `build`: turning a solution's sources into a callable in the solution's process
  (the default imports the `.py` entry file);
- `cross_compile`: compiling for a GPU target on any machine (None: not applicable);
- `toolchain_modules`: packages whose own frames may start threads or processes (a
  compiler's workers), which the thread guard allows;
- `env_prefixes`: environment variable families a solution's process keeps;
- `install_launch_hooks`: how the decoy guard counts the solution's own kernel launches
  (`guards.launches`);
- `timed_is_measurement`: whether a time on a device is a kernel's (Triton on the CPU
  runs under its interpreter: not a measurement);
- `descriptors`: features of a source for the search's map-elites cells;
- `prompt_notes`: what the agent's prompt says of the language.

The built-in plugins are `pytorch` (and FlashInfer's `python`), `triton`, `numba`,
`cuda`; `plugin_for(language)` finds any other registered by a module named in
`$SOLFORGE_PLUGINS` (`solforge.plugins`). A new language is one new file with one
registration: tests/bench/toy_language.py is the worked example.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from solforge.spec import Language, SpecError

if TYPE_CHECKING:
    from solforge.bench.build import Built
    from solforge.spec import Definition, Solution, Workload

BUILTIN = ("pytorch", "triton", "numba", "cuda")
_PLUGINS: dict[str, LanguagePlugin] = {}


class LanguagePlugin:
    """One solution language (see the package docstring). Class attributes are data;
    override the methods a language needs."""

    name: ClassVar[str]
    launches_own_kernels: ClassVar[bool] = False
    toolchain_modules: ClassVar[tuple[str, ...]] = ()
    env_prefixes: ClassVar[tuple[str, ...]] = ()
    prompt_notes: ClassVar[str] = ""

    def build(self, solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
        """Build `solution` in `workdir` (sources already written there) for `device`.
        Raises BuildError with a log. Default: import the `.py` entry file."""
        from solforge.bench.build import import_entry

        return import_entry(solution, workdir)

    def install_launch_hooks(self, device: str) -> None:
        """Install what `guards.launches` needs to count this language's kernel launches
        on `device` (once per process; a second call changes nothing)."""

    def timed_is_measurement(self, device: str) -> bool:
        return True

    def cross_compile(self, solution: Solution, definition: Definition, workloads: list[Workload],
                      target: str) -> list[Any] | None:
        """Compile reports for `target` (e.g. 'sm_90a') without running anything; None when
        the language has nothing to compile for a GPU. Raises CrossCompileError."""
        return None

    def descriptors(self, sources: str) -> dict[str, int | str | bool]:
        """Features of a solution's sources the search's map-elites cells bin by."""
        return {}


def register_language(cls: type[LanguagePlugin]) -> type[LanguagePlugin]:
    """Class decorator: register a language plugin (and its name as a `Language`)."""
    Language.register(cls.name, launches_own_kernels=cls.launches_own_kernels)
    _PLUGINS[cls.name] = cls()
    return cls


def _load_builtins() -> None:
    for name in BUILTIN:
        if name not in _PLUGINS:
            importlib.import_module(f"solforge.bench.languages.{name}")


def plugin_for(language: Language | str) -> LanguagePlugin:
    """The plugin of `language`. Raises SpecError (one line) for a language with none."""
    _load_builtins()
    key = str(language).lower()
    if key not in _PLUGINS:
        from solforge.plugins import load_plugins

        load_plugins()
    try:
        return _PLUGINS[key]
    except KeyError:
        raise SpecError(f"language '{language}': no plugin (known: {', '.join(sorted(_PLUGINS))})") from None


def plugins() -> dict[str, LanguagePlugin]:
    """Every registered plugin by language name (built-ins and `$SOLFORGE_PLUGINS`)."""
    _load_builtins()
    from solforge.plugins import load_plugins

    load_plugins()
    return dict(_PLUGINS)


def toolchain_modules() -> tuple[str, ...]:
    """Every plugin's toolchain packages, for the thread guard."""
    return tuple(m for p in plugins().values() for m in p.toolchain_modules)


def env_prefixes() -> tuple[str, ...]:
    """Every plugin's environment families, for the children's allow-list."""
    return tuple(prefix for p in plugins().values() for prefix in p.env_prefixes)
