"""Entry point of the judge's children (see `processes`): ties the child to its parent,
then serves one role, `solution` or `reference`, until told to exit or the judge goes.

Imported by the template process before it forks (so torch, numpy and numba are loaded
once); nothing here runs user code at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

import numpy  # noqa: F401  (preloaded for the children)
import torch  # noqa: F401


def _preload_profiler_imports() -> None:
    """Import what the first torch.profiler session in a process imports (torch._dynamo and
    sympy: ~2 s on the 2-core developer machine), so that the op recorder's first call in
    each solution's process does not pay it. Imports only: a process forked after a
    profiler session has run can hang in its own first session (seen with kineto's CPU
    profiler). Triton stays out: its own @jit functions are made when it is imported,
    interpreted or not by TRITON_INTERPRET, which each child sets for its device kind
    before it imports Triton. So Triton's import fails here, and the functools caches
    about Triton that torch filled meanwhile (`torch.utils._triton.has_triton_package`,
    now False, and the like) are cleared, so that a child finds Triton when it asks."""
    import functools
    import gc
    import importlib.abc

    if "triton" in sys.modules:  # imported already (not in the template): nothing to keep out
        import torch._dynamo  # noqa: F401
        import torch.profiler  # noqa: F401

        return

    class _NotTriton(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "triton" or name.startswith("triton."):
                raise ModuleNotFoundError(f"No module named '{name}' (kept out of the template)", name=name)
            return None

    finder = _NotTriton()
    sys.meta_path.insert(0, finder)
    try:
        import torch._dynamo  # noqa: F401
        import torch.profiler  # noqa: F401
    finally:
        sys.meta_path.remove(finder)
    for obj in gc.get_objects():
        if type(obj) is functools._lru_cache_wrapper and "triton" in (
                f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}".lower()):
            obj.cache_clear()


_preload_profiler_imports()

try:  # preloaded when installed: a numba solution then pays no import
    import numba  # noqa: F401
except ImportError:  # pragma: no cover - numba is optional outside the CPU extra
    pass

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
_CAP_LAST = 63


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges() -> bool:
    """Drop every capability (bounding set first, then effective/permitted/inheritable
    with capset(2), version 3) and forbid regaining any (PR_SET_NO_NEW_PRIVS). Root
    without CAP_SYS_PTRACE cannot read or write a non-dumpable process's memory; without
    CAP_DAC_OVERRIDE it is held to file permissions. True when the capabilities are gone
    (or there were none)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    for cap in range(_CAP_LAST + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the kernel's last cap: ignored
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    ok = libc.capset(ctypes.byref(header), data) == 0
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return ok


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def tie_to_parent(sig: int = signal.SIGKILL, *, watchdog: bool = False) -> None:
    """Die with the parent: PR_SET_PDEATHSIG (`sig` when the parent dies) where Linux has
    it, else (or with `watchdog`) a thread that exits when the parent process is gone.
    PR_SET_PDEATHSIG follows the parent *thread* that created this process: a process
    started from a thread that may end first (the template, started by whichever thread
    of the judge first needs it) takes the watchdog."""
    parent = os.getppid()
    if not watchdog and _prctl(PR_SET_PDEATHSIG, sig):
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
        return

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="solforge-parent-watch", daemon=True).start()


def main(conn, role: str, device: str) -> None:
    """Start a child of `role` on `device` and serve requests on `conn`."""
    import faulthandler

    tie_to_parent()
    # A process group of its own: a kill takes the compilers, compile workers and any
    # process a solution started along with the child.
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the judge handles Ctrl-C and kills its children
    faulthandler.enable()
    from solforge.hardware.device import split_device
    from solforge.plugins import load_plugins

    load_plugins()  # device kinds and languages from $SOLFORGE_PLUGINS, as in the judge
    kind, index = split_device(device)
    for key, value in kind.env.items():  # e.g. TRITON_INTERPRET=1 on the CPU, before triton is imported
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    device = kind.torch_device(index)  # what tensors live on here ('cpu' for a kind that runs on the host)
    if role == "solution":
        drop_privileges()  # before any solution code: no ptrace of its template, judge or reference
    if role == "reference":
        # Expected outputs live here: other processes of this user may not read this
        # process's memory or file descriptors through /proc.
        _prctl(PR_SET_DUMPABLE, 0)
        from solforge.bench.reference_process import serve
    else:
        from solforge.bench.solution_process import serve
    serve(conn, device)


if __name__ == "__main__":  # the sandboxed start: python -m solforge.bench.child ROLE DEVICE FD
    from multiprocessing.connection import Connection

    main(Connection(int(sys.argv[3])), sys.argv[1], sys.argv[2])
