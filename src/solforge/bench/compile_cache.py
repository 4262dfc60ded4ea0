"""Compile caches keyed by a solution's sources, kept across evaluations and runs.

A solution's process is fresh for every evaluation and its files lie in a fresh working
directory, so neither compiler's own cache finds what an earlier evaluation of the same
solution compiled: numba caches only functions decorated `cache=True`, under a path made
from the source file's directory and stamped with its modification time; Triton's
cache is keyed by the kernel's source, but lives wherever TRITON_CACHE_DIR points.
`BenchConfig.compile_cache_dir` (set by `solforge evolve` unless `--no-cache`) gives
each solution its own directory under it, named by the hash of its sources
(`sources_key`):

- numba: every CPU dispatcher defined in the solution's files is cached there (as if
  decorated `cache=True`), with a locator that names the cache by the solution's
  sources rather than the file's path and time (`SolutionCacheLocator`). numba's own
  index key adds the function's bytecode, the signature and the target machine
  (CPU name and features), so a cache entry is reused only for the same sources
  compiled for the same CPU. A function numba cannot cache (one that uses dynamic
  globals) is compiled as before, with numba's warning in the log.
- Triton: TRITON_CACHE_DIR points at the solution's directory.

One directory per solution, not one shared by all: a solution's process can write
anywhere in its own cache directory (the compilers write there from the solution's
calls), and the audit guard names a write into any other part of solforge's cache
directory (`guards.audit`). So one candidate cannot plant a compiled artifact that
another candidate, or the reference, would load; what a solution finds in its own
directory is what the same sources wrote earlier, which could run in its process
anyway. A directory that cannot be written (the read-only root of `--sandbox`) turns
the cache off for that evaluation.

Runs in the solution's process (`solution_process`), before the audit guard is armed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from solforge.spec import Solution

KEY_HEX_CHARS = 32  # 128 bits of SHA-256: no two solutions of a run share a directory

_active: dict[str, Any] = {"numba_dir": None, "key": None, "root": None}


def sources_key(solution: Solution) -> str:
    """The hex digest naming `solution`'s cache directory: SHA-256 over its language,
    entry point and every source file's path and content (order-independent)."""
    h = hashlib.sha256()
    h.update(f"{solution.spec.language}\0{solution.spec.entry_point}\0".encode())
    for src in sorted(solution.sources, key=lambda s: s.path):
        for part in (src.path, src.content):
            data = part.encode()
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()[:KEY_HEX_CHARS]


def prepare(solution: Solution, cache_dir: str | None, workdir: Path) -> str | None:
    """Point this process's compilers at `solution`'s own directory under `cache_dir`
    (numba's through `SolutionCacheLocator`, TRITON_CACHE_DIR) and return that
    directory; None, with nothing changed, when `cache_dir` is None or cannot be
    written. Call before the solution's files are imported."""
    if not cache_dir:
        return None
    root = Path(cache_dir) / sources_key(solution)
    try:
        for sub in ("numba", "triton"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError:
        return None
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")
    os.environ["NUMBA_CACHE_DIR"] = str(root / "numba")
    _active.update(numba_dir=str(root / "numba"), key=root.name, root=os.path.realpath(workdir) + os.sep)
    if "numba" in sys.modules or solution.spec.language == "numba":
        try:
            _install_locator()
        except (ImportError, AttributeError):  # a numba without these internals: no numba cache
            _active.update(numba_dir=None)
    return str(root)


def enable_numba_caching(namespaces: list[dict]) -> int:
    """Turn numba's cache on for every CPU dispatcher defined in the solution's own
    files (found in its modules' `namespaces`) that has none yet; returns how many.
    Call after the import and before the first call (which is when numba compiles)."""
    if _active["numba_dir"] is None or "numba" not in sys.modules:
        return 0
    from numba.core.caching import NullCache

    enabled = 0
    for namespace in namespaces:
        for value in list(namespace.values()):
            if type(value).__name__ != "CPUDispatcher" or not isinstance(getattr(value, "_cache", None), NullCache):
                continue
            if _solution_relative_path(_source_file(value.py_func)) is None:
                continue
            value.enable_caching()
            enabled += 1
    return enabled


def _solution_relative_path(py_file: str) -> str | None:
    """`py_file`'s path inside the solution's working directory, or None for a file
    outside it (a library's) or when no solution cache is active."""
    root = _active["root"]
    if root is None or _active["numba_dir"] is None or not py_file:
        return None
    real = os.path.realpath(py_file)
    return real[len(root):] if real.startswith(root) and os.path.exists(real) else None


def _source_file(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    return code.co_filename if code is not None else ""


def _install_locator() -> None:
    """Put `SolutionCacheLocator` first among numba's locators (this process only)."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # the name before numba 0.61
    classes, locator = impl._locator_classes, solution_cache_locator()
    if locator not in classes:
        classes.insert(0, locator)


@functools.cache
def solution_cache_locator() -> type:
    """`SolutionCacheLocator`, a subclass of numba's `_CacheLocator` made at first use
    (importing this module does not import numba)."""
    from numba.core.caching import _CacheLocator

    class SolutionCacheLocator(_CacheLocator):  # type: ignore[misc, valid-type]
        """numba's cache locator for the solution's files: the cache path is the
        solution's numba directory, the source stamp the hash of its sources (not the
        file's time), the disambiguator the file's path inside the solution and the
        function's first line."""

        def __init__(self, cache_path: str, stamp: str, disambiguator: str):
            self._cache_path, self._stamp, self._disambiguator = cache_path, stamp, disambiguator

        def ensure_cache_path(self) -> None:
            os.makedirs(self._cache_path, exist_ok=True)
            tempfile.TemporaryFile(dir=self._cache_path).close()

        def get_cache_path(self) -> str:
            return self._cache_path

        def get_source_stamp(self) -> str:
            return self._stamp

        def get_disambiguator(self) -> str:
            return self._disambiguator

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            relative = _solution_relative_path(py_file)
            if relative is None:
                return None
            where = hashlib.sha256(relative.encode()).hexdigest()[:8]
            return cls(_active["numba_dir"], _active["key"], f"{where}-{py_func.__code__.co_firstlineno}")

    return SolutionCacheLocator


__all__ = ["KEY_HEX_CHARS", "enable_numba_caching", "prepare", "solution_cache_locator", "sources_key"]
