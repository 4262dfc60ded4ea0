"""The audit guard: what a solution's own code asks of the interpreter, seen at run time.

A process-wide audit hook (PEP 578, `sys.addaudithook`) in the solution's process sees
events that name matching in the sources cannot, because they are raised by the
interpreter whatever the spelling (`getattr(tb, "tb_" + "frame")` raises the same
event as `tb.tb_frame`):

- introspection: reading frames (`object.__getattr__` on tb_frame, f_back, f_locals,
  f_globals, f_builtins, gi_frame, cr_frame, ag_frame, f_code), `sys._getframe`,
  `sys._current_frames`, and the heap (`gc.get_objects`, `gc.get_referrers`,
  `gc.get_referents`): how a solution would read the harness or reach objects it was
  not given;
- /proc: opening another process's /proc entries (the judge's, the reference
  process's), or this process's open descriptors (fd, fdinfo, map_files: where the
  channels to the judge are);
- threads and processes started from the solution's code at any time (`os.fork`,
  `subprocess.Popen`, `os.posix_spawn`, `os.system`, ...; the thread guard `watch` sees
  Python threads during calls, the judge counts the process's threads around the timed
  loop);
- network: `socket.connect`, `socket.bind`, `socket.sendto`, `socket.getaddrinfo`;
- torch's natives by symbol: a ctypes symbol lookup (`ctypes.dlsym`, however the
  function pointer is made) in one of torch's own libraries, of a symbol of torch's C++
  or C ABI anywhere (`aoti_torch_*`, mangled `at::`, `c10::`, `torch::` names), or of the
  dynamic linker's own lookup functions: an op run that way (AOTInductor's C shims call
  an op's implementation directly) skips the dispatcher, where the op recorder and the
  profiler see ops, so it is named as a forbidden call whatever the op;
- signals to the harness: `os.kill`, `os.killpg` and `os.pidfd_open` (wrapped to raise
  an event: the pidfd `signal.pidfd_send_signal` needs) from the solution's code (anywhere
  on the stack, an exit finalizer included) to a process outside its own tree (the
  template, the reference process, the judge) are refused (the hook raises
  PermissionError, so the signal is never sent) and named; so is a ctypes lookup of
  libc's signal, ptrace, raw-syscall or file-opening functions, through which the same
  would leave no audit event;
- filesystem: under `--sandbox` (`writable_root` set), opening for writing, removing or
  renaming outside the solution's working directory and /tmp. Without it, the same
  events when the solution's code is anywhere on the stack (a write through solforge's
  own writer, or any library's, is still the solution's) and the path is solforge's
  cache (ceilings every later run reads; only the solution's own compile-cache
  directory there is its to write, `bench.compile_cache`) or outside the places code writes honestly:
  the working directory, the temporary directories, /dev, and the per-user caches of
  compilers and libraries (`$XDG_CACHE_HOME` or ~/.cache, ~/.triton, ~/.nv, and the
  TRITON/TORCH/NUMBA/CUDA cache variables). The import system's own bytecode writes
  are not the solution's.

Whose code asked decides (code the solution compiled itself under another file name,
`<string>` or a library's path, stays the solution's; under a library's path it is
itself an introspection finding): an event counts when the frame that raised it (or, for a
frame walk done by `traceback` or `inspect` and for heap, process and network events,
the nearest frame outside the standard library) runs the solution's code: a file of its
own, or any file outside the standard library, the installed libraries and solforge
(a helper it wrote to /tmp and imported is its own). torch, numba, triton, logging and
warnings use frames and /proc for their own reasons, and are not blamed for it.

Not covered: what a C extension of the solution does (no audit event), and events
raised from the solution's files while the hook is off (it is on from the build to
the end of the last call).
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from types import FrameType

from solforge.bench.guards import audit_events
from solforge.bench.guards.findings import Guard, dedupe, finding
from solforge.spec import GuardFinding

_FRAME_ATTRS = frozenset({"tb_frame", "f_back", "f_locals", "f_globals", "f_builtins", "gi_frame", "cr_frame",
                          "ag_frame", "f_code", "tb_next"})
_HEAP_EVENTS = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames"})
_NETWORK_EVENTS = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
                             "socket.sendmsg"})
_WALKERS = ("traceback.py", "inspect.py")
_PROC_SELF = re.compile(r"^/proc/(self|thread-self|\d+)(/task/\d+)?/(fd|fdinfo|map_files)\b")
_PROC_PID = re.compile(r"^/proc/(\d+)/")
# The standard library's own directory (a venv's `platstdlib` would hold site-packages too).
_STDLIB = os.path.dirname(os.path.realpath(os.__file__)) + os.sep
# Installed libraries and solforge itself: code there is not the solution's.
_LIBRARIES = tuple(sorted({
    os.path.realpath(p) + os.sep for p in [*sys.path, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if p and ("site-packages" in p or "dist-packages" in p)
} | {os.path.dirname(os.path.dirname(os.path.realpath(__file__))).rsplit(os.sep, 1)[0] + os.sep, _STDLIB}))
_PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                             "os.spawn", "pty.spawn", "_thread.start_new_thread", "_thread.start_joinable_thread"})
_SIGNAL_EVENTS = frozenset({"os.kill", "os.killpg", "os.pidfd_open"})
_REMOVE_EVENTS = frozenset({"os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.truncate"})
# Every event `AuditGuard._judge` acts on (the hook is called for these alone).
JUDGED_EVENTS = frozenset({"object.__getattr__", "sys._getframe", "compile", "code.__new__", "ctypes.dlsym",
                           "ctypes.dlsym/handle", "open"}) | _PROCESS_EVENTS | _HEAP_EVENTS | _NETWORK_EVENTS \
    | _SIGNAL_EVENTS | _REMOVE_EVENTS
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# torch's C ABI for AOTInductor and the Itanium-mangled prefixes of its C++ namespaces
# (at::, c10::, torch::; `K` for const methods), and the linker's own lookups.
_TORCH_SYMBOLS = re.compile(r"^(aoti_torch_|_ZN[KVr]*(2at|3c10|5torch)(\d|[A-Z]))")
_LINKER_SYMBOLS = frozenset({"dlsym", "dlvsym", "dlopen", "dlmopen", "dladdr", "dladdr1", "dlinfo"})
# libc functions that do, with no audit event, what the events here watch: signals,
# another process's memory, raw system calls, opening files (/proc of the harness).
_UNAUDITED_SYMBOLS = frozenset({
    "kill", "killpg", "tgkill", "tkill", "sigqueue", "pidfd_send_signal", "pidfd_open", "pidfd_getfd", "ptrace",
    "process_vm_readv", "process_vm_writev", "syscall", "open", "open64", "openat", "openat64", "creat", "creat64",
    "fopen", "fopen64", "freopen",
})
_TORCH_LIBRARIES = re.compile(r"^lib(torch|c10|shm|aoti)[\w.-]*\.so")


def _honest_write_roots(workdir: str) -> tuple[str, ...]:
    """Where code writes without being named when unsandboxed: the working directory,
    the temporary directories, /dev, and the per-user caches of compilers and libraries."""
    import tempfile

    home = os.path.expanduser("~")
    roots = [workdir, tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/",
             os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
             os.path.join(home, ".triton"), os.path.join(home, ".nv")]
    roots += [v for k, v in os.environ.items()
              if v and k in ("TRITON_CACHE_DIR", "TRITON_DUMP_DIR", "TORCH_EXTENSIONS_DIR", "TORCHINDUCTOR_CACHE_DIR",
                             "NUMBA_CACHE_DIR", "CUDA_CACHE_PATH", "PYTHONPYCACHEPREFIX")]
    return tuple(os.path.realpath(r).rstrip(os.sep) + os.sep for r in roots)


# os.pidfd_open as the audit guard installs it (see _audit_pidfd_open); the integrity
# snapshot of the solution's process protects these names.
PROTECTED: tuple[str, ...] = ("os.pidfd_open", "posix.pidfd_open")


def _audit_pidfd_open() -> None:
    """os.pidfd_open raises no audit event of its own, and a pidfd is how
    signal.pidfd_send_signal reaches another process: wrap it (in os and posix) so that
    it raises "os.pidfd_open" with the pid first. Idempotent."""
    import posix

    original = getattr(posix, "pidfd_open", None)
    if original is None or getattr(original, "__wrapped__", None) is not None:
        return

    def pidfd_open(pid: int, flags: int = 0) -> int:
        sys.audit("os.pidfd_open", pid, flags)
        return original(pid, flags)

    pidfd_open.__wrapped__ = original  # type: ignore[attr-defined]
    pidfd_open.__doc__ = original.__doc__
    posix.pidfd_open = pidfd_open
    os.pidfd_open = pidfd_open


def _own_target(event: str, target: int) -> bool:
    """Whether a signal's target is this process, its own process group, or a process
    it started (a descendant, by the parent links in /proc)."""
    me = os.getpid()
    if target in (0, me) or (event != "os.killpg" and target == -os.getpgid(0)):
        return True
    if event == "os.killpg" or target < 0:
        return abs(target) == os.getpgid(0)
    pid = target
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


def _imports_bytecode(caller: FrameType | None, path: str) -> bool:
    """A bytecode file the import system writes for a module it just compiled."""
    return (caller is not None and caller.f_code.co_filename.startswith("<frozen importlib")
            and f"{os.sep}__pycache__{os.sep}" in path and ".pyc" in os.path.basename(path))


class AuditGuard:
    """One per solution's process; `arm(files_root)` once the solution's directory is
    known, then `take()` the findings after each step."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.writable_root: str | None = None
        self.readonly_roots: tuple[str, ...] = ()
        self._made: set[str] = set()  # file names of code the solution's own code compiled (see _compiled)
        self.harness_files: tuple[str, ...] = ()  # written only by the judge: any write by the solution is named
        self.honest_files: tuple[str, ...] = ()  # where code writes honestly (see the module docstring)
        self.own_cache: tuple[str, ...] = ()  # the solution's compile caches, inside solforge's cache directory
        self.armed = False
        self._findings: list[GuardFinding] = []
        self._busy = False
        audit_events.add(self._hook, JUDGED_EVENTS)
        _audit_pidfd_open()

    def arm(self, files_root: str, writable_root: str | None = None, own_cache: str | None = None) -> None:
        from solforge.cache import cache_root

        self.root = os.path.realpath(files_root) + os.sep
        self.writable_root = os.path.realpath(writable_root) + os.sep if writable_root else None
        # under /tmp, the sandbox's own tmpfs, except the read-only binds of an install or a
        # checkout that lies there (`processes._under_tmp_binds`)
        self.readonly_roots = tuple(os.path.realpath(p) + os.sep for p in
                                    os.environ.get("SOLFORGE_SANDBOX_READONLY", "").split(os.pathsep) if p)
        self.harness_files = (os.path.realpath(cache_root()) + os.sep,)
        # the solution's own compile caches, though under solforge's cache (`bench.compile_cache`)
        self.own_cache = (os.path.realpath(own_cache) + os.sep,) if own_cache else ()
        self.honest_files = _honest_write_roots(self.root)
        self.armed = True

    def take(self) -> list[GuardFinding]:
        found, self._findings = dedupe(self._findings), []
        return found

    # -- the hook -----------------------------------------------------------------------------

    def _own(self, frame: FrameType | None) -> str | None:
        """`file:line` when `frame` runs the solution's code, else None: a file in its
        working directory, or any real file outside the standard library, the installed
        libraries and solforge (a module the solution wrote elsewhere and imported)."""
        if frame is None or self.root is None:
            return None
        path = frame.f_code.co_filename
        where = f"{os.path.basename(path)}:{frame.f_lineno}"
        if path in self._made:  # code the solution compiled under another name
            return where
        if path.startswith(self.root):
            return where
        if path.startswith("<"):  # <frozen ...>, <string>: generated by a library
            return None
        real = os.path.realpath(path)
        if real.startswith(self.root):
            return where
        return None if real.startswith(_LIBRARIES) else where

    @staticmethod
    def _is_stdlib(path: str) -> bool:
        if path.startswith("<frozen") or path == __file__:
            return True
        real = os.path.realpath(path)
        return real.startswith(_STDLIB) and "site-packages" not in real and "dist-packages" not in real

    def _nearest_outside_stdlib(self, frame: FrameType | None) -> str | None:
        while frame is not None:
            if not self._is_stdlib(frame.f_code.co_filename):
                return self._own(frame)
            frame = frame.f_back
        return None

    def _hook(self, event: str, args: tuple) -> None:
        if not self.armed or self._busy:
            return
        self._busy = True
        try:
            self._judge(event, args)
        finally:
            self._busy = False

    def _judge(self, event: str, args: tuple) -> None:
        caller = sys._getframe(audit_events.CALLER_DEPTH + 1)  # the event's raiser (1 is _hook)
        if event == "object.__getattr__":
            if len(args) >= 2 and args[1] in _FRAME_ATTRS:
                where = self._own(caller)
                if where is None and args[1] in ("f_back", "f_locals") and caller is not None \
                        and caller.f_code.co_filename.endswith(_WALKERS):
                    where = self._nearest_outside_stdlib(caller)  # traceback/inspect walking for the solution
                if where:
                    self._add(Guard.INTROSPECTION, f"introspection: reads a frame's {args[1]} at {where}")
            return
        if event in _PROCESS_EVENTS:
            where = self._nearest_outside_stdlib(caller)
            if where:
                self._add(Guard.THREAD_OR_PROCESS, f"threads or processes: {event} at {where}")
            return
        if event == "sys._getframe":
            where = self._own(caller)
            if where is None and caller is not None and caller.f_code.co_filename.endswith(_WALKERS):
                where = self._nearest_outside_stdlib(caller)
            if where:
                self._add(Guard.INTROSPECTION, f"introspection: walks the call stack at {where}")
            return
        if event in _HEAP_EVENTS:
            where = self._nearest_outside_stdlib(caller)
            if where:
                self._add(Guard.INTROSPECTION, f"introspection: {event} at {where}")
            return
        if event in _NETWORK_EVENTS:
            where = self._nearest_outside_stdlib(caller)
            if where:
                target = repr(args[1]) if len(args) > 1 else ""
                self._add(Guard.NETWORK, f"network: {event} {target} at {where}".replace("  ", " "))
            return
        if event in ("compile", "code.__new__") and len(args) >= 2 and isinstance(args[1], (str, bytes)):
            self._compiled(event, os.fsdecode(args[1]), caller)
            return
        if event in ("ctypes.dlsym", "ctypes.dlsym/handle") and len(args) >= 2:
            self._symbol(args[0], args[1], caller)
            return
        if event in _SIGNAL_EVENTS and args and isinstance(args[0], int):
            self._signal(event, args[0], args[1] if len(args) > 1 else "pidfd", caller)
            return
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            self._open(path, flags, mode, caller)
            return
        if event in _REMOVE_EVENTS and args:
            if self.writable_root is not None and isinstance(args[0], (str, bytes)):
                self._write(os.fsdecode(args[0]), event, caller)
            elif self.writable_root is None:
                for path in args[:2] if event == "os.rename" else args[:1]:
                    if isinstance(path, (str, bytes)):
                        self._write_anywhere(os.fsdecode(path), event, caller)

    def _compiled(self, event: str, filename: str, caller: FrameType | None) -> None:
        """Code made by the solution's own code (compile(), exec of a string, a code
        object's replace()) under a file name that would not count as the solution's
        (a pseudo-name such as <string>, or a path inside a library): its frames stay the
        solution's, and a library's path is itself named (a frame walk from there would
        pass for the library's)."""
        where = self._own(caller)
        if where is None or filename.startswith(self.root or "\0") or filename in self._made:
            return
        self._made.add(filename)
        if filename.startswith("<"):
            return
        if os.path.realpath(filename).startswith(_LIBRARIES) or filename.startswith(_LIBRARIES):
            self._add(Guard.INTROSPECTION, f"introspection: {event} of code under a library's file name "
                                           f"({filename}) at {where}: its frames would pass for the library's")

    def _signal(self, event: str, target: int, sig: object, caller: FrameType | None) -> None:
        """os.kill(target, sig) or os.killpg(target, sig): refused and named when the
        target is outside this process's own tree and the solution's code asked."""
        if _own_target(event, target):
            return
        where = self._anywhere_on_stack(caller)
        if where:
            self._add(Guard.HARNESS_TAMPER, f"harness tamper: {event}({target}, {sig}) signals a process outside the "
                                            f"solution's own at {where} (refused)")
            raise PermissionError(f"solforge: {event} of a process outside the solution's own is not allowed")

    def _anywhere_on_stack(self, frame: FrameType | None) -> str | None:
        """`file:line` of the innermost frame of the solution's code on the stack, or None."""
        while frame is not None:
            where = None if self._is_stdlib(frame.f_code.co_filename) else self._own(frame)
            if where:
                return where
            frame = frame.f_back
        return None

    def _symbol(self, library: object, symbol: object, caller: FrameType | None) -> None:
        """A ctypes symbol lookup: `library` is the CDLL (or a raw handle), `symbol` a name
        or an ordinal."""
        path = getattr(library, "_name", None)
        path = os.path.realpath(path) if isinstance(path, str) else ""
        name = os.fsdecode(symbol) if isinstance(symbol, (str, bytes)) else ""
        if name in _UNAUDITED_SYMBOLS:
            where = self._nearest_outside_stdlib(caller)
            if where:
                self._add(Guard.HARNESS_TAMPER, f"harness tamper: looks up libc's {name} through ctypes at {where}, "
                                                "which does what the audit hook watches without its event (refused)")
                raise PermissionError(f"solforge: ctypes lookup of {name} is not allowed")
            return
        torch_library = bool(path) and (_TORCH_LIBRARIES.match(os.path.basename(path)) is not None
                                        or f"{os.sep}torch{os.sep}lib{os.sep}" in path)
        if not (torch_library or _TORCH_SYMBOLS.match(name) or name in _LINKER_SYMBOLS):
            return
        where = self._nearest_outside_stdlib(caller)
        if where:
            shown = f"{name or symbol!r}" + (f" in {os.path.basename(path)}" if path else "")
            self._add(Guard.FORBIDDEN_CALL, f"forbidden call: a native symbol of torch or the linker ({shown}) looked "
                                            f"up through ctypes at {where}: torch's ops run that way skip the "
                                            "dispatcher, where the op recorder sees them")

    def _open(self, path: str, flags: int, mode: str, caller: FrameType | None) -> None:
        absolute = os.path.abspath(path)
        proc_pid = _PROC_PID.match(absolute)
        if _PROC_SELF.match(absolute) or (proc_pid and int(proc_pid.group(1)) != os.getpid()):
            where = self._nearest_outside_stdlib(caller)
            if where:
                self._add(Guard.HARNESS_TAMPER, f"harness tamper: opens {absolute} at {where}")
            return
        writing = bool(flags & _WRITE_FLAGS) or any(c in mode for c in "wax+")
        if writing and self.writable_root is not None:
            self._write(absolute, "open for writing", caller)
        elif writing:
            self._write_anywhere(absolute, "open for writing", caller)

    def _write_anywhere(self, path: str, what: str, caller: FrameType | None) -> None:
        """A write without the sandbox: named when it goes to the harness's files, or
        outside `honest_files`, with the solution's code anywhere on the stack."""
        real = os.path.realpath(os.path.abspath(path))
        harness = (real + os.sep).startswith(self.harness_files) and not (real + os.sep).startswith(self.own_cache)
        if not harness and ((real + os.sep).startswith(self.honest_files) or _imports_bytecode(caller, real)):
            return
        where = self._anywhere_on_stack(caller)
        if where:
            whose = "solforge's cache, which the judge reads" if harness else "outside the working directory"
            self._add(Guard.FILESYSTEM, f"filesystem: {what} {real} ({whose}) from the solution's code at {where}")

    def _write(self, path: str, what: str, caller: FrameType | None) -> None:
        real = os.path.realpath(os.path.abspath(path))
        if real.startswith((self.writable_root or "", "/tmp/", "/dev/null")) and not (
                (real + os.sep).startswith(self.readonly_roots) and not real.startswith(self.writable_root or "\0")):
            return
        where = self._nearest_outside_stdlib(caller)
        if where:
            self._add(Guard.FILESYSTEM, f"filesystem: {what} {real} outside the working directory at {where}")

    def _add(self, guard: Guard, message: str) -> None:
        self._findings.append(finding(guard, message))
