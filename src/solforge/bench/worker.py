"""The isolated worker: solutions run in a spawned process, never in the caller's.

What the isolation covers:

- A crash, hang or exit in a solution costs that solution, never the run. Each device
  has one persistent worker process (multiprocessing, spawn context), reused across
  solutions and workloads for speed, and recycled (SIGKILL, then a fresh process)
  after any failure. A segfault, an illegal memory access, an abort, `sys.exit`,
  `os._exit` or an OOM kill ends the worker: the request gives RUNTIME_ERROR, naming
  the signal or exit code. An exception gives RUNTIME_ERROR with its traceback.
- Every request runs under a hard wall-clock limit that the parent enforces by killing
  the worker with SIGKILL (never a thread with a timeout): the build has
  `build_timeout_s`, the correctness trials of a workload `timeout_s`, its timing
  `timeout_s` plus the timing budget; an infinite loop gives TIMEOUT. Starting a worker
  has its own limit, `startup_timeout_s`. The worker leads a process group of its own,
  and a kill takes the whole group: compilers (nvcc, ninja), compile workers, and any
  process a solution started.
- The worker starts with a scrubbed environment: an allow-list (PATH, HOME, LANG,
  LD_LIBRARY_PATH, TMPDIR, thread counts, compilers, and the CUDA_*, NVIDIA_*, NVCC_*,
  TRITON_*, NUMBA_*, TORCH_*, TORCHINDUCTOR_*, PYTORCH_* families), less any name that
  looks like a secret (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL). The environment is
  replaced before the process is created, so /proc/<pid>/environ holds nothing else.
- Each solution runs in a temporary working directory of its own, where its sources
  are written; the worker's stdout and stderr go to `worker.log` there, whose tail
  goes into a failed trace's log (faulthandler writes the Python stack of a crash).
- Requests and replies are JSON, never pickle: a reply cannot execute code in the
  parent.

What it does not cover: this is not a security sandbox. A solution runs as the same
user with the same filesystem and network access; it can read files (the caller's
/proc/<pid>/environ among them: the scrub keeps secrets out of the worker's own
environment, not out of reach), and it could
forge the worker's replies or tamper with the harness's code in its process (the
integrity guard detects the tampering it knows of, see `guards`). Solutions evaluated
one after the other share a worker while they pass, so state one leaves in
imported libraries can reach the next (the integrity snapshot is verified after every
call; the solution's own modules are unloaded). GPU memory and time are not limited
beyond the device's own limits and the wall clock. The workers belong to the calling
process: evaluate one solution at a time per device (they are not shared between
threads).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing
import multiprocessing.util  # registers its own atexit join of child processes: before ours, see below
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from solforge.spec import EvaluationStatus

ENV_ALLOW = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TZ", "LD_LIBRARY_PATH", "TMPDIR",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XDG_CACHE_HOME",
    # compilers, for load_inline, Triton and inductor builds
    "CC", "CXX", "CPATH", "LIBRARY_PATH", "MAX_JOBS", "CONDA_PREFIX",
})
ENV_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "NVCC_", "TRITON_", "NUMBA_", "TORCH_", "TORCHINDUCTOR_", "PYTORCH_")
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)

LOG_NAME = "worker.log"


class WorkerStartError(RuntimeError):
    """A worker process did not start: a harness or environment problem, not a solution's."""


class WorkerLost(Exception):
    """A request ended without a reply: the worker timed out (and was killed) or died."""

    def __init__(self, status: EvaluationStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def scrubbed_env(device: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the allow-list of the module docstring, taken from
    `environ` (default: this process's). On the CPU, TRITON_INTERPRET=1 (Triton kernels
    run under the interpreter, for correctness only); on a GPU it is removed."""
    environ = dict(os.environ if environ is None else environ)
    env = {
        k: v for k, v in environ.items()
        if (k in ENV_ALLOW or k.startswith(ENV_PREFIXES)) and not _SECRET.search(k)
    }
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)
    return env


_SPAWN_LOCK = threading.Lock()


@contextlib.contextmanager
def _spawning(env: dict[str, str]) -> Iterator[None]:
    """The conditions a worker is spawned under, for the block.

    os.environ (and so the C environment the child inherits) is replaced by `env`. The
    caller's `__main__` is hidden from multiprocessing: spawn would otherwise run the
    caller's script again in the child (recursively, for a script without a
    `__name__ == "__main__"` guard), and the worker needs nothing from it: its entry
    point lives in solforge and its arguments are a pipe and a string.
    """
    with _SPAWN_LOCK:
        saved_env = dict(os.environ)
        main = sys.modules.get("__main__")
        saved_main = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
        os.environ.clear()
        os.environ.update(env)
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            if main is not None:
                main.__dict__.pop("__spec__", None)
                main.__dict__.update(saved_main)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        sig = signal.Signals(-code)
        why = {
            signal.SIGSEGV: " (a segfault or illegal memory access in the solution)",
            signal.SIGBUS: " (a bus error in the solution)",
            signal.SIGABRT: " (an abort, e.g. a failed assertion in native code)",
            signal.SIGKILL: " (killed: out of memory?)",
        }.get(sig, "")
        return f"the worker died from signal {sig.name}{why}"
    return f"the worker exited with code {code} during the request (sys.exit or os._exit in the solution?)"


class Worker:
    """One worker process for one device, and the parent's end of its pipe."""

    def __init__(self, device: str, startup_timeout_s: float):
        self.device = device
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        with _spawning(scrubbed_env(device)):
            self.process = ctx.Process(target=worker_main, args=(child, device), name=f"solforge-worker-{device}")
            self.process.start()
        child.close()
        if not self._conn.poll(startup_timeout_s):
            self.kill()
            raise WorkerStartError(f"the worker for {device} did not start within {startup_timeout_s:g} s")
        try:
            hello = json.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            self.process.join(5)
            raise WorkerStartError(
                f"the worker for {device} failed to start: {_describe_exit(self.process.exitcode)}"
            ) from None
        if hello.get("kind") != "ready":
            self.kill()
            raise WorkerStartError(f"the worker for {device} failed to start: {hello.get('log', hello)}")

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait at most `timeout_s` for its reply. Raises WorkerLost
        (TIMEOUT after killing the worker, or RUNTIME_ERROR when it died)."""
        try:
            self._conn.send_bytes(json.dumps(message).encode())
        except OSError:
            raise self._lost() from None
        if not self._conn.poll(timeout_s):
            self.kill()
            raise WorkerLost(EvaluationStatus.TIMEOUT,
                             f"no result within {timeout_s:g} s: the worker was killed (SIGKILL)")
        try:
            return json.loads(self._conn.recv_bytes())
        except (EOFError, OSError, ValueError):
            raise self._lost() from None

    def _lost(self) -> WorkerLost:
        self.process.join(5)
        code = self.process.exitcode
        if code is None:
            self.kill()
        return WorkerLost(EvaluationStatus.RUNTIME_ERROR, _describe_exit(code))

    def kill(self) -> None:
        """SIGKILL the worker and every process it started (its process group), and reap it."""
        if self.process.is_alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # not yet its own group leader
                self.process.kill()
        self.process.join(10)
        self._conn.close()

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(json.dumps({"kind": "exit"}).encode())
        self.process.join(timeout_s)
        self.kill()


_WORKERS: dict[str, Worker] = {}
_DEVICE_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def device_lock(device: str) -> threading.RLock:
    """The lock that one evaluation holds on `device` for all its requests: the worker keeps
    the solution it built between requests, and two timings on one device would disturb
    each other. Threads of one process (the search's proposer running an agent, its
    evaluators) take turns on each device."""
    with _LOCKS_GUARD:
        return _DEVICE_LOCKS.setdefault(device, threading.RLock())


def get_worker(device: str, startup_timeout_s: float) -> Worker:
    """The persistent worker of `device`, started if there is none alive."""
    worker = _WORKERS.get(device)
    if worker is None or not worker.alive:
        if worker is not None:
            worker.kill()
        worker = _WORKERS[device] = Worker(device, startup_timeout_s)
    return worker


def retire_worker(device: str) -> None:
    """Kill the worker of `device`; the next request starts a fresh one."""
    worker = _WORKERS.pop(device, None)
    if worker is not None:
        worker.kill()


# atexit runs handlers last-registered first: this one runs before multiprocessing's,
# which would otherwise wait forever for a live worker to end.
@atexit.register
def shutdown_workers() -> None:
    """Stop every worker (also run at interpreter exit)."""
    for device in list(_WORKERS):
        _WORKERS.pop(device).close()


# -- the worker process ------------------------------------------------------------------


def _redirect_output(path: Path) -> None:
    """Point fds 1 and 2 at `path`: prints, native library output and faulthandler's crash
    stacks of the solution land in its working directory."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def worker_main(conn: Any, device: str) -> None:
    """Entry point of the worker process: start up, then serve requests until told to
    exit or the parent goes away."""
    import faulthandler

    # A process group of its own: a kill takes the compilers, compile workers and any
    # process a solution started along with the worker.
    os.setpgid(0, 0)
    faulthandler.enable()
    try:
        from solforge.bench.session import Session

        session = Session(device)
    except BaseException as exc:
        conn.send_bytes(json.dumps({"kind": "failed", "log": f"{type(exc).__name__}: {exc}"}).encode())
        raise
    conn.send_bytes(json.dumps({"kind": "ready", "pid": os.getpid()}).encode())
    neutral = tempfile.gettempdir()
    while True:
        try:
            message = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message.get("kind") == "exit":
            return
        if message.get("kind") == "load":
            _redirect_output(Path(message["workdir"]) / LOG_NAME)
        reply = session.handle(message)
        if message.get("kind") == "unload":
            os.chdir(neutral)
        conn.send_bytes(json.dumps(reply).encode())


_HARNESS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def format_exception(exc: BaseException, frames: int = 10) -> str:
    """`Type: message`, then the last `frames` frames of the traceback outside the
    harness (all of them when every frame is the harness's), for a trace's log."""
    stack = traceback.extract_tb(exc.__traceback__)
    outside = [f for f in stack if not os.path.abspath(f.filename).startswith(_HARNESS_DIR)] or stack
    text = "".join(traceback.format_list(outside[-frames:])).rstrip()
    return f"{type(exc).__name__}: {exc}" + (f"\n{text}" if text else "")
