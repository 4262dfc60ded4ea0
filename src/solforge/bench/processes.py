"""The judge's children: how they start, what ties their lives to the judge, how they end.

Two kinds of child, each a process of its own (`child.py` is their entry point):

- the *solution's process*: fresh for every solution (never reused across solutions),
  it builds the solution and calls it on buffers the judge lends it;
- the *reference process*: one per device for the judge's life, it computes the
  definition's reference outputs and never loads a solution.

Start-up. Children are forked from a template process that has already imported
torch, numpy, numba, solforge's child code and what torch's profiler imports on first use
(torch._dynamo; the op recorder profiles every correctness call) (`multiprocessing`'s
forkserver, with those modules preloaded), so a fresh process per solution costs a fork
(~50 ms here) rather than a Python start, a torch import (~2 s) and the first profiler
session's imports (0.8 to 1.7 s). The template never runs user
code and never initializes CUDA, so its children may. It is started once, under the
scrubbed environment below, so /proc/<pid>/environ of every child holds nothing else.
With `sandbox=True` a solution's process is started instead as a fresh Python under
bubblewrap (`bwrap`): no network, the root filesystem read-only, only its working
directory writable, its own PID namespace (it cannot see the judge or the reference
process); this costs the full start (~2 s) per solution.

Lifetime. The template watches the judge's process (a watchdog thread, `template`),
and each child sets PR_SET_PDEATHSIG(SIGKILL) against the template (`child`; a
watchdog where Linux's prctl is missing): the kill of the judge by any signal, SIGKILL
included, ends the template and then every child. Each child leads a process group of its
own; `kill()` sends SIGKILL to the group, taking the compilers and any process the
solution started. Every request runs under a hard wall-clock limit, enforced by
killing the child (never a thread with a timeout).

Environment. An allow-list (PATH, HOME, LANG, LD_LIBRARY_PATH, TMPDIR, thread counts,
compilers, and the CUDA_*, NVIDIA_*, NVCC_*, TRITON_*, NUMBA_*, TORCH_*,
TORCHINDUCTOR_*, PYTORCH_* families), less any name that looks like a secret (KEY,
TOKEN, SECRET, PASSWORD, CREDENTIAL).

Messages. `messages` defines them: JSON with an id per request; the reply must carry
the pending id. `Child.request` drops anything else, logs it and counts it in
`unsolicited`, which the judge turns into a finding for a solution's process.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.reduction
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from solforge.bench.messages import HOT_FRAME, REPLY, Exit, Ready, Reply, _Message
from solforge.spec import EvaluationStatus

log = logging.getLogger(__name__)

ENV_ALLOW = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TZ", "LD_LIBRARY_PATH", "TMPDIR",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XDG_CACHE_HOME",
    # compilers, for load_inline, Triton and inductor builds
    "CC", "CXX", "CPATH", "LIBRARY_PATH", "MAX_JOBS", "CONDA_PREFIX",
    # solforge's own: plugins (device kinds, languages) and its cache directory
    "SOLFORGE_PLUGINS", "SOLFORGE_CACHE_DIR",
    # the torch profiler's log level (below); not the rest of libkineto's settings
    "KINETO_LOG_LEVEL",
})
# Families every child keeps; each language plugin adds its own (TRITON_, NUMBA_, TORCH_...).
ENV_PREFIXES = ("LC_", "CUDA_", "NVIDIA_")
# The torch profiler's (libkineto's) least level logged, unless the user sets KINETO_LOG_LEVEL:
# its levels are VERBOSE 0, INFO 1, WARNING 2, STAGE 3, ERROR 4, USDT 5 (libkineto's
# ILoggerObserver.h), and at its default (4) torch 2.13 prints two "USDT: ... profiler_start /
# profiler_stop" lines on stderr for every profiler session, which the harness's checks open in
# every solution process; 6 logs none of them, its errors included (a CUPTI that is missing or
# not permitted says so only at level 4 or below: `solforge profile` points to this when a CUDA
# profile holds no kernel time).
KINETO_LOG_LEVEL = "6"
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)
PRELOAD = ("solforge.bench.template",)
MAX_MESSAGE_BYTES = 64 * 2**20  # a longer "message" is garbage on the channel, not a reply


class ChildStartError(RuntimeError):
    """A child process did not start: a harness or environment problem, not a solution's."""


class ChildLost(Exception):
    """A request ended without its reply: the child timed out (and was killed) or died."""

    def __init__(self, status: EvaluationStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def scrubbed_env(device: str | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """A child's environment: the allow-list of the module docstring, taken from
    `environ` (default: this process's), with the rules of `device`'s kind applied
    (TRITON_INTERPRET=1 on the CPU, removed on a GPU; `DeviceKind.env`). Without a
    device, TRITON_INTERPRET is removed: the template process serves every kind, and
    its children set their kind's variables before importing the library they steer."""
    from solforge.hardware.device import split_device

    from solforge.bench.languages import env_prefixes

    prefixes = ENV_PREFIXES + env_prefixes()
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items()
           if (k in ENV_ALLOW or k.startswith(prefixes)) and not _SECRET.search(k)}
    env.pop("TRITON_INTERPRET", None)
    env.setdefault("KINETO_LOG_LEVEL", KINETO_LOG_LEVEL)
    if device is not None:
        kind, _ = split_device(device)
        for key, value in kind.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
    return env


_SPAWN_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """The caller's `__main__` hidden from multiprocessing for the block: a child would
    otherwise run the caller's script again (recursively, for a script without a
    `__name__ == "__main__"` guard), and it needs nothing from it."""
    main = sys.modules.get("__main__")
    saved_main = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved_main)


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ (and so the C environment a new process inherits) replaced by `env`."""
    saved_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def _context() -> multiprocessing.context.BaseContext:
    """The forkserver context, its template started once under the scrubbed environment."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    with _SPAWN_LOCK, _main_hidden(), _environment(scrubbed_env()):
        multiprocessing.forkserver.ensure_running()
    return ctx


def _thread_readings(pid: int, state: bool = False) -> dict[int, tuple[list[int], bytes]] | None:
    """Thread id -> (the fields of /proc/<pid>/task/<tid>/schedstat: ns run, ns waiting
    on a runqueue, times scheduled; the state letter in its stat when `state`, else
    b"") for each thread of process `pid` now alive (Linux, CONFIG_SCHED_INFO; the
    kernel's Documentation/scheduler/sched-stats.rst and proc(5)). None where /proc
    cannot tell (not Linux, the process gone); a thread that ended meanwhile is left out."""
    root = f"/proc/{pid}/task"
    try:
        tids = os.listdir(root)
    except OSError:
        return None
    out: dict[int, tuple[list[int], bytes]] = {}
    for tid in tids:
        try:
            with open(f"{root}/{tid}/schedstat", "rb") as f:
                fields = [int(x) for x in f.read().split()[:3]]
            letter = b""
            if state:
                with open(f"{root}/{tid}/stat", "rb") as f:
                    letter = f.read().rsplit(b")", 1)[1].split()[0]  # after the command name, which may hold ")"
            if len(fields) == 3:
                out[int(tid)] = (fields, letter)
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return out


def run_queue_wait_ns(pid: int) -> int | None:
    """The time the threads of process `pid` have spent runnable but waiting for a CPU,
    in ns, summed over its threads now alive: the second field of each thread's
    schedstat ("time spent waiting on a runqueue", `_thread_readings`). None where /proc
    cannot tell (not Linux, the process gone)."""
    readings = _thread_readings(pid)
    return sum(fields[1] for fields, _ in readings.values()) if readings else None


def thread_activity(pid: int) -> dict[int, tuple[int, int, bool]] | None:
    """Thread id -> (ns run on a CPU, times scheduled onto a CPU, running now) for each
    thread of process `pid` now alive (`_thread_readings`). The run time of a thread on
    a CPU is brought up to date only when it is switched or ticked, so a thread that ran
    shows in the count of times scheduled or in its state. None where /proc cannot tell."""
    readings = _thread_readings(pid, state=True)
    if not readings:
        return None
    return {tid: (fields[0], fields[2], letter == b"R") for tid, (fields, letter) in readings.items()}


def describe_exit(code: int | None, sandboxed: bool = False) -> str:
    """What a child's exit code says happened, in words for a trace's log."""
    if code is None:
        return "the process stopped answering"
    if sandboxed and code > 128:  # bwrap reports a signal death as 128 + signal
        code = -(code - 128)
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"the process died from signal {-code}"
        why = {
            signal.SIGSEGV: " (a segfault or illegal memory access in the solution)",
            signal.SIGBUS: " (a bus error in the solution)",
            signal.SIGABRT: " (an abort, e.g. a failed assertion in native code)",
            signal.SIGKILL: " (killed: by the out-of-memory killer, or by another process)",
        }.get(sig, "")
        return f"the process died from signal {sig.name}{why}"
    return f"the process exited with code {code} during the request (sys.exit or os._exit in the solution?)"


class Child:
    """One child process and the judge's end of its socket."""

    def __init__(self, role: str, device: str, startup_timeout_s: float, *, sandbox_dir: str | None = None):
        self.role, self.device = role, device
        self.sandboxed = sandbox_dir is not None
        self.unsolicited: list[str] = []
        self._next_id = 1
        ours, theirs = multiprocessing.Pipe(duplex=True)
        self.conn = ours
        if sandbox_dir is not None:
            self.process: Any = _start_sandboxed(theirs, role, device, sandbox_dir)
        else:
            ctx = _context()
            template = getattr(getattr(multiprocessing.forkserver, "_forkserver", None), "_forkserver_pid", None)
            if template and resume_if_stopped(template):  # else the fork request would wait forever
                log.warning("the template process (pid %s) was stopped by a signal: resumed", template)
            self.process = ctx.Process(target=_child_entry, args=(theirs, role, device),
                                       name=f"solforge-{role}-{device}", daemon=False)
            with _SPAWN_LOCK, _main_hidden():
                self.process.start()
                _LIVE.add(self)  # known before the lock is free: `reap_strays` must not take it for a stray
        theirs.close()
        _LIVE.add(self)  # (the sandboxed one: bwrap is the judge's child, never the template's)
        try:
            ready = self._read(startup_timeout_s, expect_id=0)
        except ChildLost as lost:
            self.kill()
            raise ChildStartError(f"the {role} process for {device} did not start: {lost.message}") from None
        if not isinstance(ready, Ready):
            self.kill()
            raise ChildStartError(f"the {role} process for {device} failed to start: {ready}")
        self.pid = ready.pid
        self._poll = select.poll()
        self._poll.register(self.conn.fileno(), select.POLLIN)

    # -- requests -------------------------------------------------------------------------

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def send(self, message: _Message, fds: tuple[int, ...] = ()) -> None:
        """Send `message`, then each of `fds` (their numbers are the child's to learn). A
        child found stopped (SIGSTOP from another process) is resumed first."""
        if resume_if_stopped(self.process.pid):
            log.warning("the %s process (pid %s) was stopped by a signal: resumed", self.role, self.process.pid)
        try:
            self.conn.send_bytes(message.model_dump_json().encode())
            for fd in fds:
                multiprocessing.reduction.send_handle(self.conn, fd, self.pid)
        except OSError:
            raise self._lost() from None

    def receive(self, expect_id: int, timeout_s: float) -> Reply:
        """The reply to request `expect_id`, waiting at most `timeout_s`. Raises ChildLost."""
        return self._read(timeout_s, expect_id)

    def request(self, message: _Message, timeout_s: float, fds: tuple[int, ...] = ()) -> Reply:
        """Send `message` and wait at most `timeout_s` for its reply. Raises ChildLost
        (TIMEOUT after killing the child, or RUNTIME_ERROR when it died)."""
        self.send(message, fds)
        return self._read(timeout_s, message.id)

    def _read(self, timeout_s: float, expect_id: int) -> Reply:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.conn.poll(left):
                self.kill()
                raise ChildLost(EvaluationStatus.TIMEOUT,
                                f"no result within {timeout_s:g} s: the process was killed (SIGKILL)")
            try:
                raw = self.conn.recv_bytes(MAX_MESSAGE_BYTES)
            except (EOFError, OSError):
                raise self._lost() from None
            try:
                reply = REPLY.validate_json(raw)
            except (ValidationError, ValueError):
                self._drop(f"a malformed message ({len(raw)} bytes: {raw[:60]!r})")
                continue
            if reply.id != expect_id:
                self._drop(f"a '{reply.kind}' reply with id {reply.id} while waiting for id {expect_id}")
                continue
            return reply

    def _drop(self, what: str) -> None:
        log.warning("the %s process (pid %s) sent %s: dropped", self.role, getattr(self, "pid", "?"), what)
        self.unsolicited.append(what)

    def pending_bytes(self) -> bool:
        """Whether anything arrived that nobody asked for (checked between requests)."""
        return bool(self._poll.poll(0))

    # -- the timed handshake ----------------------------------------------------------------

    def hot_send(self, kind: int, iteration: int, slot: int) -> None:
        os.write(self.conn.fileno(), HOT_FRAME.pack(kind, iteration, slot))

    def hot_receive(self, timeout_ms: int) -> tuple[int, int, int] | None:
        """One frame, or None when none arrived within `timeout_ms` (the caller kills)."""
        fd = self.conn.fileno()
        buf = b""
        while len(buf) < HOT_FRAME.size:
            if not self._poll.poll(timeout_ms):
                return None
            chunk = os.read(fd, HOT_FRAME.size - len(buf))
            if not chunk:
                raise self._lost()
            buf += chunk
        return HOT_FRAME.unpack(buf)

    # -- life -------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.process.poll() is None if self.sandboxed else self.process.is_alive()

    def cpu_ns(self) -> int | None:
        """CPU time the child's process has used (all its threads), in ns; None where the
        platform cannot tell (Linux: its process CPU clock, clock_getcpuclockid)."""
        try:
            return time.clock_gettime_ns(((~self.process.pid) << 3) | 2)
        except OSError:
            return None

    def run_queue_wait_ns(self) -> int | None:
        """How long the child's threads have waited, runnable, for a CPU, in ns, summed
        over its threads (`run_queue_wait_ns`); None under bwrap (the process the judge
        sees there is bwrap's, not the solution's) or where it cannot be read."""
        return None if self.sandboxed else run_queue_wait_ns(self.process.pid)

    def thread_activity(self) -> dict[int, tuple[int, int, bool]] | None:
        """Thread id -> (ns run, times scheduled, running now) for the child's threads
        (`thread_activity`); None under bwrap or where it cannot be read."""
        return None if self.sandboxed else thread_activity(self.process.pid)

    def exitcode(self) -> int | None:
        return self.process.poll() if self.sandboxed else self.process.exitcode

    def _lost(self) -> ChildLost:
        self._join(5)
        code = self.exitcode()
        if code is None:
            self.kill()
        return ChildLost(EvaluationStatus.RUNTIME_ERROR, describe_exit(code, self.sandboxed))

    def _join(self, timeout_s: float) -> None:
        if self.sandboxed:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        else:
            self.process.join(timeout_s)

    def kill(self) -> None:
        """SIGKILL the child and every process it started (its process group), and reap it."""
        pid = self.process.pid
        if pid is not None and self.alive:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # not yet its own group leader
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._join(10)
        self.conn.close()
        _LIVE.discard(self)
        if self.role == "solution":
            reap_strays()

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the child to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send_bytes(Exit(id=self.new_id()).model_dump_json().encode())
        self._join(timeout_s)
        self.kill()


_LIVE: set[Child] = set()
_HARNESS_PIDS: set[int] = set()  # other children of the template that the harness started (`harness_child`)


@contextlib.contextmanager
def harness_child(process: Any) -> Iterator[Any]:
    """Start `process` (a multiprocessing Process of the forkserver context: a child of
    the template that runs harness code, not a solution) and keep `reap_strays` off it
    until the block ends."""
    with _SPAWN_LOCK, _main_hidden():
        process.start()
        _HARNESS_PIDS.add(process.pid)
    try:
        yield process
    finally:
        _HARNESS_PIDS.discard(process.pid)


def stat_state(path: str) -> bytes | None:
    """The state letter (b"R", b"S", b"T", ...) of a /proc/<pid>/stat or
    /proc/<pid>/task/<tid>/stat file; None where it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def resume_if_stopped(pid: int | None) -> bool:
    """SIGCONT `pid` when /proc/<pid>/stat says it is stopped by a signal (state 'T'):
    a harness process a solution stopped. True when it was stopped."""
    if not pid:
        return False
    if stat_state(f"/proc/{pid}/stat") != b"T":
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGCONT)
    return True


@atexit.register
def shutdown_children() -> None:
    """Kill every child still alive (also run at interpreter exit)."""
    for child in list(_LIVE):
        child.kill()


def children_of(pid: int) -> list[int]:
    """The direct children of process `pid`, from /proc/<pid>/task/*/children (Linux);
    [] where unreadable."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(k) for k in f.read().split()]
        except OSError:
            continue
    return found


def reap_strays() -> list[int]:
    """Kill every process the template adopted that is not a live child of the judge: a
    process a solution detached (double fork, setsid) is reparented to the template, a
    subreaper (`template`), and must not outlive that solution. Returns the pids killed."""
    template = getattr(getattr(multiprocessing.forkserver, "_forkserver", None), "_forkserver_pid", None)
    if not template:
        return []
    with _SPAWN_LOCK:  # a child started meanwhile is registered before the lock is free
        live = {child.process.pid for child in _LIVE} | _HARNESS_PIDS
    killed = []
    for pid in children_of(template):
        if pid in live:
            continue
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
        killed.append(pid)
    return killed


def _child_entry(conn: multiprocessing.connection.Connection, role: str, device: str) -> None:
    from solforge.bench.child import main

    main(conn, role, device)


# -- the sandbox ---------------------------------------------------------------------------


def bwrap_path() -> str | None:
    """bubblewrap's executable, or None where it is not installed."""
    return shutil.which("bwrap")


def sandbox_problem() -> str | None:
    """Why a sandbox cannot run here (one line), or None when it can."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    probe = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                            "--unshare-pid", "--die-with-parent", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot create a sandbox here: {probe.stderr.strip().splitlines()[-1:] or probe.returncode}"
    return None


def _under_tmp_binds() -> list[str]:
    """The places the child's Python needs (the interpreter's prefix, the import path) that
    lie under /tmp, which the sandbox covers with an empty tmpfs:
    an install or a checkout under /tmp stays importable, read-only (bound with --ro-bind)."""
    tops: list[str] = []
    for p in sorted({os.path.abspath(p) for p in (sys.prefix, os.path.dirname(sys.executable), *sys.path) if p}):
        if (p == "/tmp" or p.startswith("/tmp/")) and os.path.exists(p) and not any(
                p == t or p.startswith(t + os.sep) for t in tops):
            tops.append(p)
    return tops


def _start_sandboxed(conn: multiprocessing.connection.Connection, role: str, device: str,
                     writable: str) -> subprocess.Popen:
    bwrap = bwrap_path()
    if bwrap is None:
        raise ChildStartError("--sandbox: bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)")
    fd = conn.fileno()
    os.set_inheritable(fd, True)
    readonly = _under_tmp_binds()
    readonly_binds = [arg for p in readonly for arg in ("--ro-bind", p, p)]
    dev = ["--dev-bind", "/dev", "/dev"] if device != "cpu" else ["--dev", "/dev"]
    cmd = [bwrap, "--ro-bind", "/", "/", *dev, "--proc", "/proc", "--tmpfs", "/tmp", *readonly_binds,
           "--bind", writable, writable, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--die-with-parent", "--new-session", "--chdir", writable,
           sys.executable, "-m", "solforge.bench.child", role, device, str(fd)]
    env = scrubbed_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["SOLFORGE_SANDBOX_ROOT"] = writable  # the audit guard names writes outside it
    env["SOLFORGE_SANDBOX_READONLY"] = os.pathsep.join(readonly)  # and into these, though under /tmp
    return subprocess.Popen(cmd, pass_fds=(fd,), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
