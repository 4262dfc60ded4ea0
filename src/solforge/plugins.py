"""Plugins from outside the package: the modules named in `$SOLFORGE_PLUGINS`, imported once.

A plugin module registers what it defines when it is imported: a device kind with
`solforge.hardware.register_device_kind`, and whatever other registries offer the same
decorator. Registries call `load_plugins()` before they answer a lookup, so that a kind
defined outside solforge (a test's toy device, a vendor's package) is known to every
process that has the variable set: `SOLFORGE_PLUGINS=tests/hardware/toy_device.py
solforge bench ... --device toy`.

The variable holds comma-separated entries; each is a module name (`my_pkg.rocm`),
imported with `importlib.import_module`, or the path of a `.py` file, imported as a
module named after the file's stem (so a file that a test also imports by that name is
loaded once, not twice).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path

from solforge.spec import SpecError

ENV_VAR = "SOLFORGE_PLUGINS"

_loaded: set[str] = set()
_lock = threading.RLock()


def load_plugins(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """Import every plugin named in `$SOLFORGE_PLUGINS` (of `environ`, default this process's) not imported yet.

    Returns the entries imported so far, in the order they were first loaded. Raises
    SpecError (one line naming the variable and the entry) for a module that cannot be
    found or a file that does not exist; an exception raised by the plugin's own code
    propagates unchanged.
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    with _lock:
        for entry in (part.strip() for part in value.split(",")):
            if entry and entry not in _loaded:
                _import(entry)
                _loaded.add(entry)
        return tuple(sorted(_loaded))


def _import(entry: str) -> None:
    if entry.endswith(".py") or os.sep in entry or "/" in entry:
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise SpecError(f"${ENV_VAR}: '{entry}': no such file")
        name = path.stem
        already = sys.modules.get(name)
        if already is not None and Path(getattr(already, "__file__", "") or "").resolve() == path:
            return  # imported under its own name already (e.g. by a test module)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SpecError(f"${ENV_VAR}: '{entry}': not an importable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses and pickle look the module up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return
    try:
        importlib.import_module(entry)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (entry == exc.name or entry.startswith(exc.name + ".")):
            raise SpecError(f"${ENV_VAR}: '{entry}': no module named '{exc.name}'") from None
        raise
