"""The runtime guard around one call of user code: threads, processes, side streams.

`watch_call(device)` wraps ONE call (or the import of a solution's modules). It sees:

- threads still working at return and processes started during the call, three ways:
  a process-wide audit hook (`sys.addaudithook`; events os.fork, os.forkpty,
  subprocess.Popen, os.system, os.exec, os.posix_spawn, os.spawn and, on Python >= 3.13,
  _thread.start_*), wrappers on `_thread.start_new_thread`/`threading._start_new_thread`
  (and the joinable forms) and `_posixsubprocess.fork_exec`, installed only while
  watching; and a diff of the Python threads (`sys._current_frames`,
  `threading.enumerate`) and of this process's children (`/proc/self/task/*/children`)
  between entry and exit. A thread started
  during the call is blamed only if it is still working at the call's return (the
  moment `report.set_outputs` is called, else the block's exit): its function has not
  returned yet (the start wrapper marks it), or the thread still runs Python (a
  thread-local's `__del__` at its teardown). A pool created and joined inside the call
  did all its work on the clock; a thread that has not even begun at return has not;
- on CUDA, work left on a side stream at return: after the harness hands the outputs
  to `report.set_outputs`, the exit synchronizes the current stream only, snapshots the
  outputs, synchronizes the device, and compares bit for bit; streams constructed while
  watching (`torch.cuda.Stream`) are remembered for the process and must be idle once
  the current stream is.

At exit it also hands over what `code_strings` found in source the solution compiled at
run time since the last watch ended.

Honest by design: native threads that run no Python (numba's `prange` threading layer,
torch's intra-op pool) are invisible to all three; threads and processes whose
originating frame lies in a compiler toolchain (triton's ptxas calls, torch._inductor's
compile workers, torch.utils.cpp_extension builds), directly or through installed
libraries it calls (the tqdm progress bar of an inductor compile), are allowed: the
first frame up the stack that is neither the standard library nor such a library
decides (`_origin`).

Not covered: native threads started from C/C++ (`pthread_create` in an extension; the
static guard searches C++ sources for it), processes started before the watch that
keep working, side streams created outside any watch whose writes finish before the
snapshot (the bit-for-bit check is a race the exploit must lose; a busy-wait of a few
microseconds wins it), and work queued on the legacy default stream by raw CUDA code.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import os
import sys
import sysconfig
import threading
import weakref
from collections.abc import Iterator
from types import FrameType

from solforge.bench.guards import audit_events
from solforge.bench.guards.code_strings import take_code_string_findings
from solforge.bench.guards.findings import Guard, finding
from solforge.spec import GuardFinding

_AUDIT_EVENTS = frozenset({
    "os.fork", "os.forkpty", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
    "_thread.start_new_thread", "_thread.start_joinable_thread",
})
# Packages whose own frames may start threads or processes: compilers, not kernels.
def _toolchain_modules() -> tuple[str, ...]:
    """Packages whose own frames may start threads or processes: each language plugin's
    compilers (`bench.languages`: triton, torch._inductor, numba, cpp_extension, ...)."""
    from solforge.bench.languages import toolchain_modules

    return toolchain_modules()
_STDLIB_DIRS = tuple({os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")})
_THIS_FILE = os.path.realpath(__file__)


@dataclasses.dataclass
class CallReport:
    """What the watch saw around one call. `findings` is complete once the block exits."""

    device: str
    findings: list[GuardFinding] = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    _watch: _Watch | None = dataclasses.field(default=None, repr=False, compare=False)

    def set_outputs(self, outputs: object) -> None:
        """Hand over the call's outputs (a tensor, or a tuple/list of them) right after the
        call, for the side-stream check at exit; this is also the call's return for the
        thread check. Non-tensors are `output_findings`' business."""
        if self._watch is not None:
            self._watch.returned()
        import torch

        items = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        self.outputs = [t for t in items if type(t) is torch.Tensor]


@dataclasses.dataclass(eq=False)
class _ThreadStart:
    """One thread started by user code while watching; `done` is set by the thread itself
    once the function it was started with has returned (or raised)."""

    ident: int | None = None
    done: bool = False


class _Watch:
    """The state of one watch in progress."""

    def __init__(self, report: CallReport):
        self.report = report
        self.events: list[str | tuple[str, _ThreadStart]] = []  # a thread's start: (text, its marker)
        self.allowed_threads: set[int] = set()
        self.allowed_pids: set[int] = set()
        self.started_threads: set[int] = set()
        self.thread_starts: list[_ThreadStart] = []  # every thread started while watching, in order
        self.working_at_return: set[_ThreadStart] | None = None  # None: not returned yet
        self.threads_before = _python_threads()
        self.children_before = _child_pids()

    def note(self, what: str, frame: FrameType | None, once_per_place: bool = False,
             thread: _ThreadStart | None = None, origin: tuple[str, bool] | None = None) -> bool:
        """Record a thread or process start; True if a compiler toolchain started it.
        `once_per_place`: skip it when an event was already recorded at the same frame
        (the audit event and the fork_exec wrapper see the same Popen). `thread`: the
        start is a thread's, reported only if it is still working at return. `origin`:
        `_origin(frame)`, when the caller already has it."""
        where, toolchain = origin or _origin(frame)
        text = f"{what} at {where}"
        if not toolchain and not (once_per_place and any(_text(e).endswith(f" at {where}") for e in self.events)):
            self.events.append(text if thread is None else (text, thread))
        return toolchain

    def returned(self) -> None:
        """The call returned: the threads it started that are still working now (their
        function not done, or the thread still running Python) are its hidden workers.
        Only the first call counts."""
        if self.working_at_return is None:
            running = _python_threads()
            # A finished thread's ident is soon reused by a newer one: only the latest start
            # of an ident can be the thread running under it.
            latest = {t.ident: t for t in list(self.thread_starts)}
            self.working_at_return = {t for t in list(self.thread_starts)
                                      if not t.done or (latest[t.ident] is t and t.ident in running)}


def _text(event: str | tuple[str, _ThreadStart]) -> str:
    return event if isinstance(event, str) else event[0]


_ACTIVE: list[_Watch] = []
_HOOK_INSTALLED = False
_STARTED_WHILE_WATCHING: set[int] = set()  # thread idents; a later watch does not blame itself for them
_STREAMS: weakref.WeakSet = weakref.WeakSet()
_SAVED: dict[tuple[object, str], object] = {}  # (owner, name) -> the original a wrapper replaced


@contextlib.contextmanager
def watch_call(device: str) -> Iterator[CallReport]:
    """Watch one call of user code on `device` ("cpu", "cuda", "cuda:1").

    Yields a CallReport; call `report.set_outputs(outputs)` right after the call. At exit,
    `report.findings` holds "thread-or-process" findings (what started, and the user
    frame `file:line` that started it) and, on CUDA, "side-stream" findings. When the
    block raises, the thread and process checks still run, the side-stream check does
    not, and the exception propagates. Raises nothing of its own. Not re-entrant across
    threads; nested watches share the wrappers. See the module docstring for coverage.
    """
    global _HOOK_INSTALLED
    if not _HOOK_INSTALLED:
        # permanent (PEP 578); inert outside a watch. The _thread events are left to the
        # wrappers, which see thread starts with their idents.
        audit_events.add(_audit_hook, (e for e in _AUDIT_EVENTS if not e.startswith("_thread.")))
        _HOOK_INSTALLED = True
    report = CallReport(device=device)
    watch = _Watch(report)
    report._watch = watch
    cuda = device.startswith("cuda")
    if not _ACTIVE:
        _install_wrappers(cuda)
    _ACTIVE.append(watch)
    try:
        yield report
    except BaseException:
        _leave(watch, check_streams=False)
        raise
    else:
        _leave(watch, check_streams=cuda)


def _leave(watch: _Watch, check_streams: bool) -> None:
    _ACTIVE.remove(watch)
    if not _ACTIVE:
        _remove_wrappers()
    watch.returned()  # the block's exit, where set_outputs was never called (a raise, an import)
    report = watch.report
    report._watch = None
    events = [e for e in watch.events if isinstance(e, str) or e[1] in watch.working_at_return]
    for event in dict.fromkeys(map(_text, events)):
        report.findings.append(finding(Guard.THREAD_OR_PROCESS, f"threads or processes: {event}"))
    me = threading.get_ident()
    earlier = _STARTED_WHILE_WATCHING - watch.started_threads  # an earlier call's thread, already reported there
    for ident, name in _python_threads().items():
        if ident not in watch.threads_before and ident not in watch.allowed_threads and ident != me \
                and ident not in earlier:
            report.findings.append(finding(
                Guard.THREAD_OR_PROCESS,
                f"threads or processes: thread '{name}' started during the call is still running at return"))
    for pid in sorted(_child_pids() - watch.children_before - watch.allowed_pids):
        report.findings.append(finding(
            Guard.THREAD_OR_PROCESS, f"threads or processes: child process {pid} started during the call"))
    report.findings += take_code_string_findings()  # strings the solution compiled meanwhile (or since the last watch)
    if check_streams:
        report.findings += _side_stream_findings(report)


# -- threads and processes ---------------------------------------------------------------


def _audit_hook(event: str, args: tuple) -> None:
    if not _ACTIVE:
        return
    _ACTIVE[-1].note(f"{event}{_first_arg(args)}", sys._getframe(audit_events.CALLER_DEPTH))


def _first_arg(args: tuple) -> str:
    if not args:
        return ""
    text = repr(args[0])
    return f" ({text})" if len(text) <= 60 else f" ({text[:57]}...)"


def _thread_wrapper(original):
    def start(function, *args, **kwargs):
        if not _ACTIVE:
            return original(function, *args, **kwargs)
        name = getattr(getattr(function, "__self__", None), "name", getattr(function, "__qualname__", "?"))
        marker = _ThreadStart()
        # Everything slow (the stack walk) happens before the thread exists: time spent
        # here after the start would let a hidden worker finish "before the return" in a
        # watched call and not in an unwatched one.
        origin = _origin(sys._getframe(1))

        def marked(*a, **kw):
            # While this frame is on the thread's stack the thread runs Python (even inside
            # a builtin it was started with), so _current_frames lists it.
            try:
                return function(*a, **kw)
            finally:
                marker.done = True

        ident = original(marked, *args, **kwargs)
        if not _ACTIVE:  # the watch ended meanwhile (a start from another thread)
            return ident
        # The joinable form returns a handle; its ident is what _current_frames uses.
        key = marker.ident = getattr(ident, "ident", ident)
        watch = _ACTIVE[-1]
        watch.thread_starts.append(marker)
        watch.started_threads.add(key)
        _STARTED_WHILE_WATCHING.add(key)
        if watch.note(f"thread '{name}' started", None, thread=marker, origin=origin):
            watch.allowed_threads.add(key)
        return ident

    start.__wrapped__ = original
    return start


def _fork_exec_wrapper(original):
    def fork_exec(*args, **kwargs):
        pid = original(*args, **kwargs)
        if _ACTIVE:
            program = args[1] if len(args) > 1 else "?"
            if _ACTIVE[-1].note(f"process{_first_arg((program,))} started", sys._getframe(1), once_per_place=True):
                _ACTIVE[-1].allowed_pids.add(pid)
        return pid

    fork_exec.__wrapped__ = original
    return fork_exec


def _install_wrappers(cuda: bool) -> None:
    import _posixsubprocess  # noqa: PLC0415 — POSIX only; the guard is documented as POSIX

    for owner, name, make in (
        (_thread, "start_new_thread", _thread_wrapper), (_thread, "start_new", _thread_wrapper),
        (_thread, "start_joinable_thread", _thread_wrapper), (threading, "_start_new_thread", _thread_wrapper),
        (threading, "_start_joinable_thread", _thread_wrapper), (_posixsubprocess, "fork_exec", _fork_exec_wrapper),
        (sys.modules.get("subprocess"), "_fork_exec", _fork_exec_wrapper),
    ):
        original = getattr(owner, name, None)
        if original is not None:
            _SAVED[(owner, name)] = original
            setattr(owner, name, make(original))
    if cuda:
        import torch

        original_new = torch.cuda.Stream.__dict__["__new__"]
        constructor = original_new.__func__ if isinstance(original_new, staticmethod) else original_new

        def remembering_new(cls, *args, **kwargs):
            stream = constructor(cls, *args, **kwargs)
            _STREAMS.add(stream)
            return stream

        _SAVED[(torch.cuda.Stream, "__new__")] = original_new
        torch.cuda.Stream.__new__ = staticmethod(remembering_new)


def _remove_wrappers() -> None:
    for (owner, name), original in _SAVED.items():
        setattr(owner, name, original)
    _SAVED.clear()


def _origin(frame: FrameType | None) -> tuple[str, bool]:
    """`file:line` of the frame that answers for a start, and whether it is a compiler
    toolchain's (allowed).

    From the innermost frame outward, frames of the standard library, of this module and
    of installed libraries other than the toolchains (site-packages: tqdm's monitor
    thread, a pool library) are passed over; the first frame left decides: a toolchain's
    allows the start, anything else (the solution's own code, a callback it handed to a
    toolchain) is blamed. So a library's service thread started under a compile is the
    compiler's, and a thread the solution starts through a library is the solution's.
    With no deciding frame, the innermost frame outside the standard library is named
    (or "<standard library>"), and blamed."""
    toolchain_dirs = _toolchain_dirs()
    innermost = None
    while frame is not None:
        raw = frame.f_code.co_filename
        path = os.path.realpath(raw)
        if path != _THIS_FILE and not _is_stdlib(path, raw):
            where = f"{os.path.basename(path)}:{frame.f_lineno}"
            if path.startswith(toolchain_dirs):
                return where, True
            if not _is_installed(path):
                return where, False
            innermost = innermost or where
        frame = frame.f_back
    return innermost or "<standard library>", False


def _is_installed(path: str) -> bool:
    """A file of an installed package (site-packages or dist-packages)."""
    return "site-packages" in path or "dist-packages" in path


def _is_stdlib(path: str, raw: str) -> bool:
    if raw.startswith("<frozen"):
        return True
    return path.startswith(_STDLIB_DIRS) and not _is_installed(path)


def _toolchain_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _toolchain_modules():
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file:
            path = os.path.realpath(file)
            dirs.append(os.path.dirname(path) + os.sep if path.endswith("__init__.py") else path)
    return tuple(dirs)


def _python_threads() -> dict[int, str]:
    """Every thread that runs Python: ident -> name."""
    names = {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
    return {ident: names.get(ident, f"<thread {ident}>") for ident in {*sys._current_frames(), *names}}


def _child_pids() -> set[int]:
    """This process's children, from /proc (Linux); empty where /proc is missing."""
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    return pids


# -- side streams (CUDA) -----------------------------------------------------------------


def _side_stream_findings(report: CallReport) -> list[GuardFinding]:
    """Synchronize the current stream only, snapshot the outputs, then the whole device:
    an output that changed in between was written by work the current stream never
    waited for (and so the harness's CUDA events never timed)."""
    import torch

    device = torch.device(report.device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    current = torch.cuda.current_stream(device)
    done = torch.cuda.Event()
    done.record(current)
    done.synchronize()
    busy = [s for s in list(_STREAMS) if s.device == device and not s.query()]
    snapshot = [t.clone() for t in report.outputs]
    copied = torch.cuda.Event()
    copied.record(current)
    copied.synchronize()
    torch.cuda.synchronize(device)
    out = []
    changed = [i for i, (before, after) in enumerate(zip(snapshot, report.outputs))
               if not _bitwise_equal(before, after)]
    if changed:
        out.append(finding(Guard.SIDE_STREAM, f"work left on a side stream: outputs {changed} changed after the "
                                              f"current stream finished"))
    if busy:
        out.append(finding(Guard.SIDE_STREAM, f"work left on a side stream: {len(busy)} stream(s) created by the "
                                              f"solution still busy when the current stream finished"))
    return out


def _bitwise_equal(a, b) -> bool:
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))
