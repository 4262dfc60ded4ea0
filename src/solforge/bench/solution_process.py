"""What a solution's process does: build the solution, call it on the judge's buffers.

This process is fresh for one solution and trusted with nothing (see `judge`): it
reads inputs from the arena the judge lent it and writes outputs into the arena's
output buffers; the judge reads those bytes back with its own record of their dtype
and shape. What it reports besides "done" (guard findings, op records, its own
timings) can only add findings or be cross-checked; no report of it can pass a
solution.

Requests (see `messages`): `calibrate` (the bare handshake, before any solution code
is imported), `load` (build, under the guards), `attach`/`detach` (a workload's
arena), `call` (one correctness call, recorded), `hot` (the judge-timed CPU loop:
GO/DONE frames until STOP), `time_on_device` (the CUDA-event loop on a GPU).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from solforge.bench.arena import Arena
from solforge.bench.messages import (
    REQUEST,
    Attach,
    Attached,
    Calibrate,
    Calibrated,
    Call,
    Called,
    Cooled,
    Detach,
    Detached,
    Exit,
    Failed,
    Hot,
    Load,
    Loaded,
    Prime,
    Primed,
    Ready,
    TimedOnDevice,
    TimeOnDevice,
    _Message,
)
from solforge.spec import Definition, EvaluationStatus, GuardFinding, Solution, Workload

LOG_NAME = "worker.log"

# Functions of this module the integrity guard protects: a solution that rebinds one,
# or swaps its code, is tampering with the harness's side of the handshake.
PROTECTED: tuple[str, ...] = (
    *(f"solforge.bench.solution_process.Session.{name}"
      for name in ("load", "call", "hot", "time_on_device", "_invoke", "_hand_over", "_arguments")),
    *(f"solforge.bench.arena.Arena.{name}" for name in ("read", "write", "view", "span")),
    "solforge.bench.handshake.serve_rounds", "solforge.bench.handshake._frame",
    "solforge.bench.handshake.SignalPage.get",
    "solforge.bench.handshake.SignalPage.set", "solforge.bench.timing.time_on_device",
    "solforge.bench.timing.device_loop", "solforge.bench.guards.recorder.OpRecorder.record",
    *(f"solforge.bench.solution_process.Session.{name}"
      for name in ("handle", "calibrate", "attach", "detach", "_same_storage", "_probe_returned", "_with_audit")),
    "solforge.bench.solution_process.serve",
    *(f"solforge.bench.guards.recorder.OpRecorder.{name}" for name in ("__init__", "__enter__", "__exit__")),
    # The reply path: every reply leaves as JSON made by its model's serializer and written
    # by multiprocessing's Connection (os.write on a socket's fd); the timed frames go
    # through the socket's own methods. A solution that rebinds one of these rewrites
    # what the judge reads (an op record stripped, a finding dropped).
    *(f"multiprocessing.connection.Connection.{name}"
      for name in ("send_bytes", "_send_bytes", "_send", "recv_bytes", "_recv_bytes", "_recv", "send", "recv",
                   "poll", "_poll", "fileno", "_check_closed", "_check_readable", "_check_writable")),
    *(f"multiprocessing.reduction.{name}" for name in ("send_handle", "recv_handle", "sendfds", "recvfds")),
    *(f"socket.socket.{name}" for name in ("send", "sendall", "recv", "sendmsg", "recvmsg")),
    "os.write", "os.read",
    "pydantic.main.BaseModel.model_dump_json", "pydantic.main.BaseModel.__init__",
    "pydantic.type_adapter.TypeAdapter.validate_json", "solforge.bench.messages.REQUEST",
    *(f"solforge.bench.messages.{model}.{part}"
      for model in ("Ready", "Calibrated", "Loaded", "Attached", "Called", "Cooled", "TimedOnDevice", "Detached",
                    "Failed", "OpRecord")
      for part in ("__pydantic_serializer__", "__pydantic_validator__", "model_dump_json", "__init__")),
)


class _Verdict(Exception):
    def __init__(self, status: EvaluationStatus, log: str, findings: list[GuardFinding] | None = None):
        super().__init__(log)
        self.status, self.log, self.findings = status, log, findings or []


def _redirect_output(path: Path) -> None:
    """Point fds 1 and 2 at `path`: prints, native output and faulthandler's crash stacks."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class _Workload:
    """A workload's arena, as this process sees it."""

    def __init__(self, arena: Arena, workload: Workload | None, dataset_root: str | None):
        self.arena = arena
        self.workload = workload
        self.dataset_root = dataset_root
        self.returned: list[tuple[int, set[int], list[Any]]] = []  # (call, storages, objects) kept alive
        self.calls = 0


class Session:
    """The state of one solution's process."""

    def __init__(self, device: str):
        import torch

        from solforge.bench import guards
        from solforge.bench.guards import observation
        from solforge.bench.guards.audit import PROTECTED as AUDITED
        from solforge.bench.guards.audit import AuditGuard

        if device != "cpu":
            torch.cuda.set_device(torch.device(device))
            torch.cuda.init()
        self.device = device
        self.guards = guards
        observation.hide_profiler()  # torch's profiler state reads the same in every call
        self.audit = AuditGuard()  # installs its os.pidfd_open, which the snapshot then protects
        # Before any user code is imported:
        self.snapshot = guards.IntegritySnapshot.take((*PROTECTED, *observation.PROTECTED, *AUDITED))
        self.definition: Definition | None = None
        self.solution: Solution | None = None
        self.fn: Any = None
        self.trusted = False
        self.counter: Any = None
        self.workloads: dict[str, _Workload] = {}

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request: _Message, conn: Any) -> _Message:
        from solforge.bench.tracebacks import format_exception

        try:
            if isinstance(request, Calibrate):
                from multiprocessing.reduction import recv_handle

                return self.calibrate(request, recv_handle(conn), recv_handle(conn))
            if isinstance(request, Load):
                return self.load(request)
            if isinstance(request, Prime):
                return self.prime(request)
            if isinstance(request, Attach):
                from multiprocessing.reduction import recv_handle

                return self.attach(request, recv_handle(conn))
            if isinstance(request, Call):
                return self.call(request)
            if isinstance(request, Hot):
                from multiprocessing.reduction import recv_handle

                return self.hot(request, recv_handle(conn), recv_handle(conn))
            if isinstance(request, TimeOnDevice):
                return self.time_on_device(request)
            if isinstance(request, Detach):
                return self.detach(request)
            return Failed(id=request.id, status=EvaluationStatus.RUNTIME_ERROR, log=f"unknown request {request.kind}")
        except _Verdict as v:
            return Failed(id=request.id, status=v.status, log=v.log, findings=v.findings)
        except BaseException as exc:  # SystemExit from user code too: this process must answer
            return Failed(id=request.id, status=EvaluationStatus.RUNTIME_ERROR, log=format_exception(exc))

    # -- calibrate ----------------------------------------------------------------------------

    def calibrate(self, request: Calibrate, page_fd: int, sock_fd: int) -> Calibrated:
        """The bare handshake, timed by the judge: rounds with the hand-over copy of
        `copy_bytes[slot]` bytes (a warm private buffer into a shared one) and no call,
        before any solution code exists in this process."""
        import torch

        from solforge.bench.handshake import serve_rounds

        sizes = request.copy_bytes
        scratch = torch.empty(max(sizes, default=0) or 1, dtype=torch.uint8)
        sources = [torch.ones(n, dtype=torch.uint8) for n in sizes]

        def call(slot: int) -> None:
            if sizes[slot]:
                torch.Tensor.copy_(scratch[:sizes[slot]], sources[slot])

        serve_rounds(page_fd, sock_fd, lambda slot, profile: slot, call, lambda exc: None)
        return Calibrated(id=request.id)

    # -- load -------------------------------------------------------------------------------------

    def load(self, request: Load) -> Loaded:
        from solforge.bench import compile_cache
        from solforge.bench.build import BuildError, build_solution

        self.definition = definition = Definition.model_validate(request.definition)
        self.solution = solution = Solution.model_validate(request.solution)
        self.trusted = request.trusted
        workdir = Path(request.workdir)
        os.chdir(workdir)
        _redirect_output(workdir / LOG_NAME)
        own_cache = compile_cache.prepare(solution, request.compile_cache_dir, workdir)
        if not self.trusted:
            self.audit.arm(str(workdir), writable_root=os.environ.get("SOLFORGE_SANDBOX_ROOT"), own_cache=own_cache)
        nvcc_timeout_s = 0.9 * request.build_timeout_s  # nvcc times out (and says so) before the judge kills
        findings: list[GuardFinding] = []
        try:
            if solution.spec.entry_file.endswith(".py") and not self.trusted:
                from solforge.bench.guards.code_strings import check_code_strings

                check_code_strings(definition.solforge.forbidden_calls, str(workdir))  # source compiled at run time
                with self.guards.watch_call(self.device) as report:
                    built = build_solution(solution, definition, workdir, self.device, nvcc_timeout_s)
                findings += report.findings
            else:
                built = build_solution(solution, definition, workdir, self.device, nvcc_timeout_s)
        except BuildError as exc:
            raise self._with_audit(_Verdict(EvaluationStatus.COMPILE_ERROR, str(exc))) from None
        compile_cache.enable_numba_caching(built.namespaces)  # before the launch counter wraps them
        self.fn = built.fn
        own: list[str] = []
        if not self.trusted:
            findings += self.snapshot.verify() + self.audit.take()
            if built.fn is not None and not findings:
                self.counter = self.guards.launch_counter(built.namespaces, solution, self.device)
                own = list(self.counter.kernels)
        if findings:
            raise _Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in findings), findings)
        return Loaded(id=request.id, runnable=built.fn is not None, log=built.log, own_kernels=own)

    def prime(self, request: Prime) -> Primed:
        """One call of the built solution on inputs of `request.workload` drawn here
        (`messages.Prime`). What it returns or raises is dropped: the judged calls decide.
        Raises _Verdict (REWARD_HACK) for what the guards of a call, or the integrity
        check after it, found."""
        import secrets

        import torch

        from solforge.bench.arena import plan, torch_dtype
        from solforge.bench.inputs import make_inputs

        if self.fn is None or self.definition is None or self.solution is None:
            return Primed(id=request.id)
        definition = self.definition
        workload = Workload.model_validate(request.workload)
        axes = definition.resolve_axes(workload.axes)
        inputs = make_inputs(definition, workload, axes, secrets.randbits(62), "normal", "cpu", None)
        outs = {t.name: torch.empty(t.shape, dtype=torch_dtype(t.dtype))
                for t in plan(definition, axes, 1, inputs=False).outputs[0].tensors}
        dps = outs if self.solution.spec.destination_passing_style else None
        counted = None if self.counter is None else (self.counter.count, self.counter.own_ns,
                                                     self.counter.by_kernel.copy())
        watch = contextlib.nullcontext() if self.trusted else self.guards.watch_call(self.device)
        findings: list[GuardFinding] = []
        with watch as report:
            try:
                self._invoke(inputs, dps)
            except _Verdict:  # the solution raised: the judged calls raise it again, and report it
                pass
        if counted is not None:  # its launches count for nothing
            self.counter.count, self.counter.own_ns, self.counter.by_kernel = counted
        if report is not None:
            findings += report.findings
        if not self.trusted:
            findings += self.snapshot.verify() + self.audit.take()
        if findings:
            raise _Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in findings), findings)
        return Primed(id=request.id)

    # -- workloads --------------------------------------------------------------------------------

    def attach(self, request: Attach, fd: int) -> Attached:
        workload = Workload.model_validate(request.workload_data) if request.workload_data else None
        self.workloads[request.workload] = _Workload(Arena.open(request.layout, fd), workload, request.dataset_root)
        return Attached(id=request.id)

    def detach(self, request: Detach) -> Detached:
        state = self.workloads.pop(request.workload, None)
        if state is not None:
            state.returned.clear()
            state.arena.close()
        if self.device != "cpu":
            import torch

            torch.cuda.empty_cache()
        return Detached(id=request.id)

    def _arguments(self, state: _Workload, slot: int) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
        """(inputs, destination buffers or None, the shared output views) for one call."""
        import torch

        from solforge.bench.correctness import poison_

        layout = state.arena.layout
        inputs = state.arena.read(layout.inputs[slot])
        shared_out = state.arena.read(layout.outputs[slot])
        if self.device != "cpu":
            inputs = {k: v.to(self.device, copy=True) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        dps = None
        if self.solution is not None and self.solution.spec.destination_passing_style:
            if self.device == "cpu":
                dps = shared_out
            else:
                dps = {k: poison_(torch.empty_like(v, device=self.device)) for k, v in shared_out.items()}
        return inputs, dps, shared_out

    # -- one correctness call -------------------------------------------------------------------

    def call(self, request: Call) -> Called:
        from solforge.bench.guards.recorder import OpRecorder

        state = self.workloads[request.workload]
        inputs, dps, shared_out = self._arguments(state, request.slot)
        recorder = OpRecorder() if (request.record and not self.trusted) else None
        watch = contextlib.nullcontext() if self.trusted else self.guards.watch_call(self.device)
        profile = contextlib.nullcontext()
        if (self.counter is not None and state.calls == 0 and self.device != "cpu" and self.solution is not None
                and self.solution.spec.language.launches_own_kernels):
            profile = self.counter.profile()
        findings: list[GuardFinding] = []
        probes = self._probe_returned(state, [*inputs.values(), *shared_out.values()]) \
            if not dps and not self.trusted else ([], set())
        t0 = time.perf_counter()
        try:
            with profile, watch as report:
                ret = self._invoke(inputs, dps, recorder)
                if report is not None:
                    report.set_outputs(list(dps.values()) if dps else ret)
        except _Verdict as v:
            raise self._with_audit(v) from None
        solution_ms = (time.perf_counter() - t0) * 1e3
        if report is not None:
            findings += report.findings
        index = state.calls
        state.calls += 1
        same_as = None
        if not dps and not self.trusted:
            findings += self.guards.output_findings(ret, self.device)
            same_as = self._same_storage(state, index, ret, probes)
        if not findings:
            self._hand_over(ret, dps, shared_out)
        if not self.trusted:
            findings += self.snapshot.verify() + self.audit.take()
        return Called(
            id=request.id, record=recorder.record() if recorder is not None else None, findings=findings,
            same_storage_as=same_as, solution_ms=solution_ms,
            launches=self.counter.count if self.counter is not None else 0,
            own_kernel_ms=self.counter.own_ns / 1e6 if self.counter is not None else 0.0,
            profiled_own=self.counter.own_kernels_profiled if self.counter is not None else None,
            profiled_names=(self.counter.profiled_kernel_names or [])[:8] if self.counter is not None else [],
        )

    def _with_audit(self, verdict: _Verdict) -> _Verdict:
        """A failure as a reward hack when the audit guard saw an attempt during it (a
        socket refused by the sandbox, a write to a read-only root): the attempt is the
        finding, the error its consequence."""
        found = [] if self.trusted else self.audit.take()
        if not found:
            return verdict
        return _Verdict(EvaluationStatus.REWARD_HACK,
                        "; ".join(f.message for f in found) + f" (then: {verdict.log.splitlines()[0]})", found)

    def _invoke(self, inputs: dict[str, Any], dps: dict[str, Any] | None, recorder: Any = None) -> Any:
        from solforge.bench.tracebacks import format_exception

        kwargs = {**inputs, **dps} if dps else inputs
        try:
            if recorder is not None:
                with recorder:
                    return self.fn(**kwargs)
            return self.fn(**kwargs)
        except BaseException as exc:
            raise _Verdict(EvaluationStatus.RUNTIME_ERROR, f"the solution raised {format_exception(exc)}") from None

    def _probe_returned(self, state: _Workload, arguments: list[Any]) -> tuple[list[tuple[int, Any, Any]], set]:
        """Before a call: poison every tensor an earlier call returned (all kept alive),
        keeping a copy of each. Reusing a storage is not caching (one static output per
        shape, overwritten on every call, is a CUDA-graph habit); handing back what was
        returned before is: after the call, a probe still all poison was not rewritten
        (`_same_storage`). Not probed (returning them again counts as stale): tensors
        sharing storage with this call's arguments, bool and complex dtypes (no poison).
        Returns (earlier call, tensor, saved copy) for each probe, and the (earlier call,
        storage) pairs left unprobed."""
        import torch

        from solforge.bench.correctness import poison_

        taken = {t.untyped_storage().data_ptr() for t in arguments if type(t) is torch.Tensor}
        probes, keys, unprobed = [], set(), set()
        for call, _, items in state.returned:
            for t in items:
                if type(t) is not torch.Tensor or not t.numel() or t.is_meta:
                    continue
                if t.dtype == torch.bool or t.is_complex() or t.untyped_storage().data_ptr() in taken:
                    unprobed.add((call, t.untyped_storage().data_ptr()))
                    continue
                key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
                if key not in keys:
                    keys.add(key)
                    probes.append((call, t, t.detach().clone()))
        with torch.inference_mode():  # inference tensors too
            for _, t, _ in probes:
                poison_(t.detach())
        return probes, unprobed

    def _same_storage(self, state: _Workload, index: int, ret: Any,
                      probed: tuple[list[tuple[int, Any, Any]], set]) -> int | None:
        """The earlier call whose returned result this call handed back without rewriting
        it: a returned tensor overlapping a probe (`_probe_returned`) the call left all
        poison, or sharing a storage an earlier call returned that was not probed; None
        if none. Untouched probes get their content back (what the judge then compares
        is what the solution kept). Earlier returns are kept alive, so an honest
        allocator cannot hand their addresses out again."""
        import torch

        from solforge.bench.correctness import poison_, same_bits

        probes, unprobed = probed
        stale: list[tuple[int, int, int, int]] = []  # (call, storage, first byte, end byte) of untouched probes
        with torch.inference_mode():
            for call, t, saved in probes:
                if same_bits(t, poison_(torch.empty_like(t))):
                    torch.Tensor.copy_(t.detach(), saved)
                    stale.append((call, t.untyped_storage().data_ptr(), *_byte_span(t)))
        items = list(ret) if type(ret) in (tuple, list) else [ret]
        tensors = [t for t in items if type(t) is torch.Tensor and t.numel() and not t.is_meta]
        storages = {t.untyped_storage().data_ptr() for t in tensors} - {0}
        hits = [call for call, ptr, start, end in stale for t in tensors
                if t.untyped_storage().data_ptr() == ptr and _overlaps(_byte_span(t), (start, end))]
        hits += [call for call, ptr in unprobed if ptr in storages]
        state.returned.append((index, storages, items))
        return min(hits, default=None)

    def _hand_over(self, ret: Any, dps: dict[str, Any] | None, shared_out: dict[str, Any]) -> None:
        """Put the call's outputs into the judge's buffers: a returned tensor is copied in
        (through the class's method: an attribute set on the tensor is never called);
        on a GPU, destination buffers are copied back to the host. Raises _Verdict for a
        wrong count, shape or dtype."""
        import torch

        names = list(shared_out)
        if dps:
            if self.device != "cpu":
                torch.cuda.synchronize()
                for name in names:
                    torch.Tensor.copy_(shared_out[name], dps[name])
            return
        outs = list(ret) if type(ret) in (tuple, list) else [ret]
        if len(outs) != len(names):
            raise _Verdict(EvaluationStatus.INCORRECT_SHAPE, f"returned {len(outs)} value(s), expected {len(names)} "
                                                             "output(s)")
        for name, out in zip(names, outs):
            want = shared_out[name]
            if not isinstance(out, torch.Tensor):
                raise _Verdict(EvaluationStatus.INCORRECT_SHAPE, f"output '{name}' is a {type(out).__name__}, not a "
                                                                 "tensor")
            if tuple(torch.Tensor.size(out)) != tuple(want.shape):
                raise _Verdict(EvaluationStatus.INCORRECT_SHAPE, f"output '{name}' has shape "
                                                                 f"{tuple(torch.Tensor.size(out))}, expected "
                                                                 f"{tuple(want.shape)}")
            if out.dtype != want.dtype:
                raise _Verdict(EvaluationStatus.INCORRECT_DTYPE, f"output '{name}' is {out.dtype}, expected "
                                                                 f"{want.dtype}")
            expected_device = torch.device(self.device)
            if out.device.type != expected_device.type:
                raise _Verdict(EvaluationStatus.RUNTIME_ERROR, f"output '{name}' is on {out.device}, expected "
                                                               f"{self.device}")
            torch.Tensor.copy_(want, out)

    # -- the judge-timed loop (CPU) ----------------------------------------------------------------

    def hot(self, request: Hot, page_fd: int, sock_fd: int) -> Cooled | Failed:
        """The judge-timed rounds (`handshake`): READY(i, slot) -> arguments of input
        slot `slot` -> ARMED -> GO -> the call, outputs into output slot `slot` -> DONE,
        until STOP. Nothing here is a verdict. A call that raises is answered with
        ERROR_BIT; the reason comes with the reply after STOP."""
        from torch.profiler import record_function

        from solforge.bench.guards.observation import conceal
        from solforge.bench.guards.recorder import TIMED_MARK, is_compute
        from solforge.bench.handshake import serve_rounds
        from solforge.bench.tracebacks import format_exception

        state = self.workloads[request.workload]
        layout = state.arena.layout
        slots = [self._arguments(state, s) for s in range(len(layout.inputs))]
        threads_before = set(threading.enumerate())
        own_ms: list[float] = []
        errors: list[_Verdict] = []
        fn, hand_over = self.fn, self._hand_over

        profiled: set[str] = set()
        compute_ms: list[float] = []  # per profiled call: torch compute self time (the profiler's)
        profiled_own_ms: list[float] = []  # per profiled call: own-kernel launch time (the launch counter's)
        counter = self.counter
        launches_before = counter.count if counter is not None else 0

        def arm(slot: int, profile: bool) -> tuple[int, dict[str, Any] | None, dict[str, Any], Any]:
            _, dps, shared_out = slots[slot]
            profiler = None
            if profile and not self.trusted:
                from torch.profiler import ProfilerActivity
                from torch.profiler import profile as torch_profile

                profiler = torch_profile(activities=[ProfilerActivity.CPU])
            return slot, dps, shared_out, profiler

        def call(armed: tuple[int, dict[str, Any] | None, dict[str, Any], Any]) -> None:
            slot, dps, shared_out, profiler = armed
            t0 = time.perf_counter()
            kwargs = state.arena.read(layout.inputs[slot])  # written by the judge after ARMED (scalars too)
            own_before = counter.own_ns if counter is not None else 0
            if profiler is not None:
                profiler.__enter__()
                conceal()  # the call sees no profiler, as in every other call (guards.observation)
                with record_function(TIMED_MARK):
                    pass
            try:
                if dps:
                    fn(**kwargs, **dps)
                else:
                    hand_over(fn(**kwargs), None, shared_out)
            finally:
                if profiler is not None:
                    profiler.__exit__(None, None, None)
                    events = profiler.events()
                    profiled.update(e.name for e in events)
                    compute_ms.append(sum(e.self_cpu_time_total for e in events
                                          if e.name.startswith("aten::") and is_compute(e.name)) / 1e3)
                    profiled_own_ms.append(((counter.own_ns if counter is not None else 0) - own_before) / 1e6)
            own_ms.append((time.perf_counter() - t0) * 1e3)

        def on_error(exc: BaseException) -> None:
            errors.append(exc if isinstance(exc, _Verdict) else
                          _Verdict(EvaluationStatus.RUNTIME_ERROR, f"the solution raised {format_exception(exc)}"))

        serve_rounds(page_fd, sock_fd, arm, call, on_error)
        if errors:
            error = self._with_audit(errors[0])
            return Failed(id=request.id, status=error.status, log=f"timed call: {error.log}", findings=error.findings)
        findings: list[GuardFinding] = []
        if not self.trusted:
            from solforge.bench.guards.findings import Guard, finding

            started = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
            if started:
                findings.append(finding(Guard.THREAD_OR_PROCESS, f"threads or processes: thread(s) {started} started "
                                                                 "during the timed calls are still running"))
            findings += self.snapshot.verify() + self.audit.take()
        return Cooled(id=request.id, solution_samples_ms=own_ms, findings=findings, profiled=sorted(profiled),
                      profiled_compute_ms=compute_ms, profiled_own_ms=profiled_own_ms,
                      launches=(counter.count - launches_before) if counter is not None else 0)

    # -- the CUDA-event loop (GPU) ----------------------------------------------------------------

    def time_on_device(self, request: TimeOnDevice) -> TimedOnDevice:
        from solforge.bench.timing import time_on_device

        state = self.workloads[request.workload]
        assert self.definition is not None and state.workload is not None
        run = time_on_device(self, state, request)
        findings: list[GuardFinding] = []
        if not self.trusted:
            findings += self.snapshot.verify() + self.audit.take()
        return TimedOnDevice(id=request.id, samples_ms=run.samples_ms, method=run.method, clocks=run.clocks,
                             warnings=run.warnings, findings=findings)


def _byte_span(t: Any) -> tuple[int, int]:
    """[first, end) bytes of a strided tensor within its storage (its extent, gaps included)."""
    first = t.storage_offset() * t.element_size()
    extent = 1 + sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
    return first, first + extent * t.element_size()


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def serve(conn: Any, device: str) -> None:
    """Serve requests on `conn` until Exit or the judge goes away."""
    session = Session(device)
    conn.send_bytes(Ready(id=0, pid=os.getpid()).model_dump_json().encode())
    while True:
        try:
            request = REQUEST.validate_json(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if isinstance(request, Exit):
            return
        reply = session.handle(request, conn)
        try:
            conn.send_bytes(reply.model_dump_json().encode())
        except OSError:
            return
