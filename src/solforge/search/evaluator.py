"""How the search evaluates: one `Evaluator` interface, two engines, and the harness
backend they both run.

    future = evaluator.submit(EvaluationRequest(solution, workloads, cutoff_ms))
    traces = future.result()      # one Trace per workload, SOL reports attached
    evaluator.capacity            # evaluations that may run at once
    evaluator.close()

- `HarnessBackend` is one evaluation, wherever it runs: the cross-compile for a GPU
  target when the run has one (a failure is COMPILE_ERROR with ptxas' or nvcc's own
  message on every workload, no evaluation spent), then the harness
  (`solforge.bench.evaluate`, with the run's cut-off) and the SOL reports against the
  run's baselines (`attach_sol`), the compile reports attached to each Trace
  (`compile_reports`). In a `--compile-only` run it stops after the cross-compile:
  the Traces say the workload was not run (`skipped`), and fitness is compile-level.
  Compiled kernels persist across a run and across runs: the harness's BenchConfig
  names a compile-cache directory under solforge's cache directory, where each
  solution's process compiles into a directory of its own, named by its sources
  (`solforge.bench.compile_cache`); `--no-cache` gives every run fresh, empty ones
  (`compile_cache_env`).
- `LocalEvaluator` runs it on this machine's devices, one evaluation judged per device
  at a time, on a `concurrent.futures` thread pool (the harness isolates each evaluation
  in processes of its own; the thread only waits). On the CPU, two more per device build
  their solutions meanwhile (`BenchConfig.build_ahead`: stopped while anything is timed).
- `RayEvaluator` (`solforge evolve --ray auto|ADDRESS`) runs it in Ray actors: one per
  GPU (`num_gpus=1`), or one per CPU slot. The archive stays with the controller: an
  actor returns Traces and never writes anything. An actor that dies is restarted by
  Ray and its evaluation retried once (`max_restarts`, `max_task_retries=1`: Ray's own
  fault tolerance); a second death is the candidate's failure, with the cause. A
  kill -9 of the controller loses only the evaluations in flight, as locally.

The search only ever sees the Traces an evaluator returns. `EvaluationError` is the
infrastructure's failure (a harness that cannot start a process, an actor that died
twice), never the kernel's: those are statuses in the Traces.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from solforge.bench import BenchConfig, attach_sol, baseline_latencies, detect_device, evaluate, run_bench
from solforge.roofline.attach import baseline_spreads
from solforge.spec import Definition, EvaluationStatus, Solution, SpecError, Trace, Workload

Baselines = dict[str, dict[str, float]]  # baseline name -> workload uuid -> latency, ms
Spreads = dict[str, dict[str, tuple[float, bool]]]  # baseline name -> workload uuid -> (IQR / median, unstable)


class EvaluationError(Exception):
    """The evaluation infrastructure failed (not the kernel); the message is the cause."""


def device_kind(device: str) -> str:
    """"cpu" or "cuda" of a device string ("cpu", "cuda", "cuda:1")."""
    return device.split(":")[0]


def default_device() -> str:
    """This machine's default device kind: "cuda" when a GPU is there, else "cpu"
    (`solforge.hardware.resolve_device(None)`, the hardware's one rule)."""
    from solforge.hardware import resolve_device

    return resolve_device(None).type


def evaluation_devices(device: str) -> list[str]:
    """The devices a run evaluates on: ["cpu"], or every visible GPU ("cuda:0", ...).
    Raises SpecError, naming `--device`, for a device this machine does not have."""
    from solforge.hardware import resolve_device

    try:
        found = resolve_device(device_kind(device))
    except SpecError as exc:
        raise SpecError(f"--device {device}: {exc}") from None
    if not found.kind.indexed:
        return [found.type]
    return [f"{found.type}:{i}" for i in range(found.count)]


def ensure_ceilings(device: str) -> None:
    """Calibrate `device` ("cpu" or "cuda") once (cached) when no ceilings are cached: on
    the CPU there is no datasheet, and without peaks there is no SOL score to search on."""
    from solforge.hardware import calibrate, detect

    if detect(device).ceilings is None:
        calibrate(device)


def compile_cache_dir(cache: bool) -> str | None:
    """`BenchConfig.compile_cache_dir` of a run: `compile` under solforge's cache
    directory (`solforge.cache.cache_root()`), or None with `cache` False (`--no-cache`)."""
    from solforge.cache import cache_root

    return str(cache_root() / "compile") if cache else None


def compile_cache_env(cache: bool) -> dict[str, str]:
    """The environment of a run's harness for its compilers' own caches. With `cache`
    False (`--no-cache`): NUMBA_CACHE_DIR and TRITON_CACHE_DIR at fresh temporary
    directories, so that nothing compiled before is reused. With `cache`, nothing: each
    solution's process points them at its own directory (`compile_cache_dir`)."""
    import tempfile

    if cache:
        return {}
    fresh = Path(tempfile.mkdtemp(prefix="solforge-nocache-"))
    return {"NUMBA_CACHE_DIR": str(fresh / "numba"), "TRITON_CACHE_DIR": str(fresh / "triton")}


@dataclass(frozen=True)
class EvaluationRequest:
    """One evaluation: `solution` on `workloads`. `cutoff_ms` (workload uuid -> ms): the
    harness stops timing a workload past it (`timing.cut`). `screening`: time with the
    screening budget (`bench.config.screening_budget`), a first figure that a would-be
    new best replaces by a full one."""

    solution: Solution
    workloads: tuple[Workload, ...]
    cutoff_ms: Mapping[str, float] | None = None
    screening: bool = False


@dataclass
class HarnessBackend:
    """One evaluation on one device (see the module docstring). Picklable: a Ray actor
    holds a copy."""

    definition: Definition
    config: BenchConfig
    target: str | None = None  # cross-compile for this GPU target first (e.g. "sm_90a")
    compile_only: bool = False  # stop after the cross-compile: compile-level fitness, no timing
    cache_env: dict[str, str] = field(default_factory=dict)  # NUMBA_CACHE_DIR, TRITON_CACHE_DIR
    _device: Any = field(default=None, repr=False, compare=False)

    def prepare(self) -> None:
        """Point this process's compilers (and the harness's children) at the caches."""
        for key, value in self.cache_env.items():
            Path(value).mkdir(parents=True, exist_ok=True)
            os.environ[key] = value

    def evaluate(self, request: EvaluationRequest, device: str, baselines: Baselines) -> list[Trace]:
        self.prepare()
        workloads = list(request.workloads)
        reports = None
        if self.target is not None:
            reports, failed = self._cross_compile(request.solution, workloads)
            if failed is not None:
                return failed
        if self.compile_only:
            return self._compiled_traces(request.solution, workloads, reports or [])
        config = self.config.screening(device) if request.screening else self.config
        traces = evaluate(self.definition, workloads, request.solution, device, config,
                          cutoff_ms=dict(request.cutoff_ms) if request.cutoff_ms else None)
        from solforge.bench.judge import outside_timing

        with outside_timing() if config.build_ahead else contextlib.nullcontext():  # others may be timing
            if self._device is None:
                self._device = detect_device(device)
            attach_sol(self.definition, traces, baselines, self._device)
        if reports is not None:
            from solforge.bench.crosscompile import reports_for_workload

            for t in traces:
                if t.evaluation is not None:
                    t.evaluation.solforge.compile_reports = reports_for_workload(reports, t.workload.uuid)
        return traces

    def measure_baselines(self, workloads: Sequence[Workload], names: Sequence[str],
                          device: str) -> tuple[Baselines, dict[str, dict[str, str]], Spreads]:  # fmt: skip
        """(median latency per workload uuid of each baseline ("eager", "compile"), in ms,
        measured with the same harness as every candidate; baseline -> workload uuid ->
        why there is no figure, one line, for those that have none; baseline -> workload
        uuid -> (IQR / median, unstable), the stability of each figure)."""
        self.prepare()
        result = run_bench(self.definition, list(workloads), [], device, baselines=tuple(names), config=self.config)
        latencies = baseline_latencies(result.baselines)
        failures: dict[str, dict[str, str]] = {}
        for name, traces in result.baselines.items():
            for t in traces:
                if t.workload.uuid in latencies.get(name, {}):
                    continue
                ev = t.evaluation
                if ev is None:
                    why = "no evaluation"
                elif ev.status is EvaluationStatus.PASSED:
                    why = "passed, but its time is not a performance measurement"
                else:
                    first = next((ln.strip() for ln in ev.log.splitlines() if ln.strip()), "")
                    why = f"{ev.status.value}: {first[:160]}" if first else ev.status.value
                failures.setdefault(name, {})[t.workload.uuid] = why
        return latencies, failures, baseline_spreads(result.baselines)

    # -- the cross-compile ------------------------------------------------------------------
    def _cross_compile(self, solution: Solution, workloads: list[Workload]):
        """(reports, None), or (None, COMPILE_ERROR traces) when it fails; (None, None) for a
        language with nothing to compile for a GPU (numba, PyTorch)."""
        from solforge.bench.crosscompile import CrossCompileError, can_cross_compile, cross_compile

        if not can_cross_compile(solution):
            return None, None
        try:
            return cross_compile(solution, self.definition, workloads, self.target,
                                 dataset_root=self.config.dataset_root), None
        except CrossCompileError as exc:
            log = f"cross-compile for {self.target} failed ({exc.kind}): {exc.one_line()}\n{exc.message}"
            return None, [self._trace(solution, w, EvaluationStatus.COMPILE_ERROR, log, None) for w in workloads]

    def _compiled_traces(self, solution: Solution, workloads: list[Workload], reports: list) -> list[Trace]:
        from solforge.bench.crosscompile import reports_for_workload

        if not reports:
            log = (f"compile-only: a {solution.spec.language.value} solution has no GPU kernel to compile for "
                   f"{self.target}; nothing to judge")
            return [self._trace(solution, w, EvaluationStatus.COMPILE_ERROR, log, None) for w in workloads]
        return [self._trace(solution, w, EvaluationStatus.PASSED, "", reports_for_workload(reports, w.uuid))
                for w in workloads]

    def _trace(self, solution: Solution, workload: Workload, status: EvaluationStatus, log: str,
               reports: list | None) -> Trace:  # fmt: skip
        from datetime import datetime, timezone

        from solforge.spec import Environment, Evaluation, EvaluationExtension

        skipped = warnings = None
        if status is EvaluationStatus.PASSED:
            skipped = f"compile-only: compiled for {self.target}; not run, not checked for correctness, not timed"
            warnings = ["compile-only: the fitness is compile-level (occupancy from ptxas' figures), not a timing"]
        return Trace(definition=self.definition.name, workload=workload, solution=solution.name, evaluation=Evaluation(
            status=status, environment=Environment(hardware=f"cross-compile {self.target}"),
            timestamp=datetime.now(timezone.utc).isoformat(), log=log,
            solforge=EvaluationExtension(device=f"target:{self.target}", held_out=workload.held_out,
                                         compile_reports=reports, skipped=skipped, warnings=warnings or [])))


class Evaluator(Protocol):
    """What the controller evaluates candidates through."""

    capacity: int  # evaluations that may run at once
    baselines: Baselines | None  # set by `measure_baselines` or from a resumed run
    description: str  # one line for the user, e.g. "local: cpu" or "ray: 4 actors (1 GPU each)"

    def start(self) -> None:
        """Make the devices ready before the first measurement (e.g. calibrate them)."""
        ...

    def measure_baselines(self, workloads: Sequence[Workload], names: Sequence[str]) -> Baselines:
        """Measure the baselines SOL scores are computed against, and merge them into
        `baselines` (what has no figure: `baseline_failures`, name -> uuid -> why)."""
        ...

    def submit(self, request: EvaluationRequest) -> Future[list[Trace]]:
        """Start one evaluation; its future gives one Trace per workload, in order, or
        raises EvaluationError. At most `capacity` run at once (more wait their turn)."""
        ...

    def close(self) -> None:
        """Release the workers; evaluations in flight are abandoned."""
        ...


BUILT_AHEAD = 2  # evaluations per device building ahead (`BenchConfig.build_ahead`) beside the one judged


class LocalEvaluator:
    """The harness backend on this machine's devices: one evaluation judged per device at a
    time. With the harness's `build_ahead` (the CPU), `BUILT_AHEAD` more per device start
    and build their solutions meanwhile, outside the device lock and stopped while it
    times (`bench.judge.run_judged`): numba's compile of the next candidates overlaps the
    judging of this one. Three in flight, not two: when a judged turn ends, a candidate
    waiting to start its process goes first (`DeviceLock.first`), so the next build
    starts while the next candidate is judged."""

    def __init__(self, backend: HarnessBackend, devices: Sequence[str]) -> None:
        self.backend = backend
        self.devices = tuple(devices)
        config = getattr(backend, "config", None)  # a backend without a harness config builds nothing ahead
        ahead = BUILT_AHEAD if getattr(config, "build_ahead", False) and not backend.compile_only else 0
        self.capacity = len(self.devices) * (1 + ahead)
        self.baselines: Baselines | None = None
        self.baseline_failures: dict[str, dict[str, str]] = {}
        self.baseline_spreads: Spreads = {}  # baseline -> workload uuid -> (IQR / median, unstable)
        self.description = f"local: {', '.join(self.devices)}"
        self._free: queue.Queue[str] = queue.Queue()
        for _ in range(1 + ahead):
            for d in self.devices:
                self._free.put(d)
        self._pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="solforge-evaluate")

    @property
    def definition(self) -> Definition:
        return self.backend.definition

    def start(self) -> None:
        if not self.backend.compile_only:
            ensure_ceilings(device_kind(self.devices[0]))

    def measure_baselines(self, workloads: Sequence[Workload], names: Sequence[str]) -> Baselines:
        measured, self.baseline_failures, spreads = self.backend.measure_baselines(workloads, names, self.devices[0])
        self.baseline_spreads = merge_per_baseline(self.baseline_spreads, spreads)
        self.baselines = merge_per_baseline(self.baselines, measured)
        return self.baselines

    def submit(self, request: EvaluationRequest) -> Future[list[Trace]]:
        return self._pool.submit(self._run, request)

    def _run(self, request: EvaluationRequest) -> list[Trace]:
        assert self.baselines is not None, "LocalEvaluator: baselines are measured before any evaluation"
        device = self._free.get()  # the pool has one thread per place in the queue: one is always free here
        try:
            return self.backend.evaluate(request, device, self.baselines)
        except EvaluationError:
            raise
        except Exception as exc:  # the harness's infrastructure failed, not the kernel
            raise EvaluationError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._free.put(device)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RayEvaluator:
    """The harness backend in Ray actors (see the module docstring).

    `address`: "auto" joins the cluster this machine belongs to (`ray start --head`, or
    RAY_ADDRESS), else starts a local Ray; any other value is a cluster address
    (e.g. "ray://head:10001" or "10.0.0.1:6379"); None uses the Ray this process has
    already initialized (tests: `ray.init(num_cpus=2)`). `workers`: the number of actors
    (default: one per GPU of the cluster on a GPU run, one per CPU on a CPU run).
    Raises SpecError, naming `--ray`, when there is no cluster at `address`, or no GPU
    in it for a GPU run.
    """

    def __init__(self, backend: HarnessBackend, device: str, address: str | None = "auto",
                 workers: int | None = None, max_restarts: int = -1) -> None:  # fmt: skip
        import ray

        self.backend = backend
        self.baselines: Baselines | None = None
        self.baseline_failures: dict[str, dict[str, str]] = {}
        self.baseline_spreads: Spreads = {}  # baseline -> workload uuid -> (IQR / median, unstable)
        _connect(ray, address)
        gpu = device_kind(device) != "cpu"
        resources = ray.cluster_resources()
        available = int(resources.get("GPU" if gpu else "CPU", 0))
        if gpu and available == 0:
            raise SpecError(f"--ray {address}: the cluster has no GPU for a {device} run")
        self.capacity = max(1, workers or available)
        actor_class = ray.remote(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1, max_restarts=max_restarts,
                                 max_task_retries=1)(_EvaluationActor)
        self._device = "cuda:0" if gpu else "cpu"  # inside an actor, Ray's CUDA_VISIBLE_DEVICES shows its one GPU
        self._actors = [actor_class.remote(backend, self._device) for _ in range(self.capacity)]
        self._idle: queue.Queue[Any] = queue.Queue()
        for a in self._actors:
            self._idle.put(a)
        self._lock = threading.Lock()
        self._closed = False
        self.description = f"ray: {self.capacity} actor(s), {'1 GPU' if gpu else '1 CPU'} each"

    @property
    def definition(self) -> Definition:
        return self.backend.definition

    def start(self) -> None:
        import ray

        if not self.backend.compile_only:
            ray.get([a.ensure_ceilings.remote() for a in self._actors])

    def measure_baselines(self, workloads: Sequence[Workload], names: Sequence[str]) -> Baselines:
        import ray

        actor = self._idle.get()
        try:
            measured, self.baseline_failures, spreads = ray.get(
                actor.measure_baselines.remote(list(workloads), list(names)))
        finally:
            self._idle.put(actor)
        self.baseline_spreads = merge_per_baseline(self.baseline_spreads, spreads)
        self.baselines = merge_per_baseline(self.baselines, measured)
        return self.baselines

    def submit(self, request: EvaluationRequest) -> Future[list[Trace]]:
        """Runs on an idle actor, or waits (in a pool thread) for one. Ray restarts a dead
        actor and retries the evaluation once; after that the future raises
        EvaluationError with Ray's cause."""
        assert self.baselines is not None, "RayEvaluator: baselines are measured before any evaluation"
        outer: Future[list[Trace]] = Future()
        actor = self._idle.get()
        ref = actor.evaluate.remote(request, self.baselines)

        def done(inner: Future) -> None:
            self._idle.put(actor)
            try:
                outer.set_result(inner.result())
            except Exception as exc:  # noqa: BLE001 - Ray's errors, the backend's: the infrastructure's
                outer.set_exception(EvaluationError(_ray_cause(exc)))

        ref.future().add_done_callback(done)
        return outer

    def actor_pids(self) -> list[int]:
        """The process id of each actor (for tests that kill one)."""
        import ray

        return ray.get([a.pid.remote() for a in self._actors])

    def close(self) -> None:
        import ray

        with self._lock:
            if self._closed:
                return
            self._closed = True
        for a in self._actors:
            ray.kill(a, no_restart=True)


class _EvaluationActor:
    """A Ray actor's body: the harness backend on the actor's device."""

    def __init__(self, backend: HarnessBackend, device: str) -> None:
        self.backend, self.device = backend, device
        backend.prepare()

    def evaluate(self, request: EvaluationRequest, baselines: Baselines) -> list[Trace]:
        return self.backend.evaluate(request, self.device, baselines)

    def measure_baselines(self, workloads: list[Workload], names: list[str]) -> tuple[Baselines, dict, Spreads]:
        return self.backend.measure_baselines(workloads, names, self.device)

    def ensure_ceilings(self) -> None:
        ensure_ceilings(device_kind(self.device))

    def pid(self) -> int:
        return os.getpid()


def merge_per_baseline(old: dict | None, new: dict | None) -> dict:
    """Baseline name -> workload uuid -> value (a latency in ms, or a spread), `new`'s
    values over `old`'s; fresh dicts, neither argument changed."""
    out = {name: dict(v) for name, v in (old or {}).items()}
    for name, v in (new or {}).items():
        out.setdefault(name, {}).update(v)
    return out


def _connect(ray: Any, address: str | None) -> None:
    """Join or start Ray; SpecError naming `--ray` when there is no cluster at `address`."""
    if address is None:
        if not ray.is_initialized():
            raise SpecError("--ray: Ray is not initialized in this process (give auto or an address)")
        return
    if ray.is_initialized():
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except (ConnectionError, RuntimeError, ValueError):
            ray.init(**quiet)  # no cluster on this machine: a local one
        return
    why = _unreachable(address)
    if why is not None:
        raise SpecError(f"--ray {address}: no Ray cluster there ({why}); start one with `ray start --head` "
                        "or pass --ray auto")
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:  # noqa: BLE001 - Ray raises several types for "nothing there"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"--ray {address}: no Ray cluster there ({first[:200]}); start one with "
                        "`ray start --head` or pass --ray auto") from None


CONNECT_TIMEOUT_S = 5.0


def _unreachable(address: str) -> str | None:
    """Why nothing answers at a Ray address ("host:port" of the GCS, or "ray://host:port"
    of Ray Client), or None when a TCP connection opens. Ray's own connect retries for
    minutes against an address with nothing behind it; this answers in seconds."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return "expected host:port or ray://host:port"
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def _ray_cause(exc: BaseException) -> str:
    """One line for the archive: why Ray gave no result."""
    from ray.exceptions import RayActorError

    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    first = next((ln.strip() for ln in text if ln.strip()), "")
    if isinstance(exc, RayActorError):  # died, or unreachable (its process is gone) on the retry too
        return f"the evaluation actor died twice (Ray restarted it and retried once): {name}: {first[:300]}"
    return f"{name}: {first[:300]}"


__all__ = [
    "Baselines",
    "EvaluationError",
    "EvaluationRequest",
    "Evaluator",
    "HarnessBackend",
    "LocalEvaluator",
    "RayEvaluator",
    "compile_cache_dir",
    "compile_cache_env",
    "default_device",
    "device_kind",
    "ensure_ceilings",
    "evaluation_devices",
]
