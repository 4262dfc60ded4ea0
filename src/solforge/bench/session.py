"""What the worker process does with each request: build, check, time, unload.

A `Session` lives in the worker (see `worker.py` for the process and its isolation).
It takes the integrity snapshot at start-up, before any solution is imported, and
wraps every call of user code in the runtime guards (`invoke`). Baselines made by the
harness itself (the eager reference, its torch.compile) are trusted: no guards.

Replies are plain JSON dicts: `{"kind": "loaded" | "checked" | "timed" | "unloaded", ...}`
on success, `{"kind": "failed", "status", "log", "findings", ...}` for a verdict, and
`{"kind": "spec_error", "message"}` for bad problem data.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path
from typing import Any

from solforge.bench.build import BuildError, Built, build_reference, build_solution, unload
from solforge.bench.config import TimingBudget
from solforge.bench.correctness import Verdict, WorkloadContext, outputs_of, run_trials
from solforge.bench.timing import measure
from solforge.spec import Definition, EvaluationStatus, Language, Solution, SpecError, Workload


# The harness functions a trace's verdict depends on, for the integrity guard: a solution
# that rebinds one, swaps its code or rewires the globals it calls is tampering.
PROTECTED: tuple[str, ...] = (
    *(f"solforge.bench.correctness.{name}" for name in (
        "run_trials", "check_call", "compare_outputs", "reference_expected", "check_structure",
        "check_inputs_unchanged", "outputs_of", "allocate_outputs")),
    *(f"solforge.bench.timing.{name}" for name in (
        "measure", "CpuTimer.start", "CpuTimer.stop", "CudaTimer.start", "CudaTimer.stop", "CudaTimer.results_ms")),
    *(f"solforge.bench.session.Session.{name}" for name in ("load", "check", "time", "invoke")),
)


def failed(status: EvaluationStatus, log: str, findings: list | None = None, **extra: Any) -> dict[str, Any]:
    return {"kind": "failed", "status": status.value, "log": log,
            "findings": [f.model_dump() for f in findings or []], **extra}


class Session:
    """The worker's state: the device, the guards, the solution built and its reference."""

    def __init__(self, device: str):
        import torch

        if device != "cpu":
            torch.cuda.set_device(torch.device(device))
            torch.cuda.init()
        from solforge.bench import guards

        self.device = device
        self.guards = guards
        # Before any user code is imported (see PROTECTED).
        self.snapshot = guards.IntegritySnapshot.take(PROTECTED)
        self.built: Built | None = None
        self.solution: Solution | None = None
        self.definition: Definition | None = None
        self.reference: Any = None
        self.trusted = False
        self.counter: Any = None
        self.calls = 0
        self.ctx: WorkloadContext | None = None
        self.contexts: dict[str, WorkloadContext] = {}

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """Serve one request; every failure becomes a reply, never an exception."""
        from solforge.bench.worker import format_exception

        handler = {"load": self.load, "check": self.check, "time": self.time, "unload": self.unload}.get(
            message.get("kind", "")
        )
        if handler is None:
            return failed(EvaluationStatus.RUNTIME_ERROR, f"unknown request {message.get('kind')!r}")
        try:
            return handler(message)
        except Verdict as v:
            return failed(v.status, v.message, v.findings, max_absolute_error=v.max_absolute_error,
                          max_relative_error=v.max_relative_error,
                          reference_precision=self.ctx.reference_precision if self.ctx else None)
        except SpecError as exc:
            return {"kind": "spec_error", "message": str(exc)}
        except BaseException as exc:  # SystemExit from user code too: the worker must answer
            return failed(EvaluationStatus.RUNTIME_ERROR, format_exception(exc))

    # -- requests ---------------------------------------------------------------------------

    def load(self, message: dict[str, Any]) -> dict[str, Any]:
        self.unload({})
        self.definition = definition = Definition.model_validate(message["definition"])
        self.solution = solution = Solution.model_validate(message["solution"])
        self.trusted = bool(message["trusted"])
        workdir = Path(message["workdir"])
        os.chdir(workdir)
        self.reference = build_reference(definition)
        python_entry = solution.spec.entry_file.endswith(".py")
        # nvcc gets less than the request's limit, so that it times out (and says so) first.
        nvcc_timeout_s = 0.9 * float(message["build_timeout_s"])
        findings = []
        try:
            if python_entry and not self.trusted:
                with self.guards.watch_call(self.device) as report:
                    built = build_solution(solution, definition, workdir, self.device, nvcc_timeout_s)
                findings += report.findings
            else:
                built = build_solution(solution, definition, workdir, self.device, nvcc_timeout_s)
        except BuildError as exc:
            return failed(EvaluationStatus.COMPILE_ERROR, str(exc))
        self.built = built
        self.calls = 0
        if not self.trusted:
            findings += self.snapshot.verify()
            if findings:
                return failed(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in findings), findings)
            if built.fn is not None:
                self.counter = self.guards.launch_counter(built.namespaces, solution, self.device)
        return {"kind": "loaded", "runnable": built.fn is not None, "log": built.log}

    def check(self, message: dict[str, Any]) -> dict[str, Any]:
        ctx = self._context(message)
        detector = None if self.trusted else self.guards.CacheDetector(self.definition)
        report = run_trials(ctx, self.invoke, int(message["trials"]), detector)
        if not self.trusted and self.counter is not None:
            findings = self.guards.decoy_findings(self.counter, self.solution, self.calls)
            if findings:
                raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in findings), findings)
        return {"kind": "checked", "calls": report.calls, "max_absolute_error": report.max_absolute_error,
                "max_relative_error": report.max_relative_error, "reference_precision": report.reference_precision}

    def time(self, message: dict[str, Any]) -> dict[str, Any]:
        ctx = self._context(message)
        assert self.solution is not None
        interpreted = self.solution.spec.language is Language.triton and self.device == "cpu"
        run = measure(
            ctx,
            self.invoke,
            TimingBudget.model_validate(message["budget"]),
            int(message["flush_bytes"]),
            int(message["checks"]),
            cuda_graph=bool(message["cuda_graph"]),
            lock_clocks=bool(message["lock_clocks"]),
            is_measurement=not interpreted,
        )
        if interpreted:
            run.warnings.append("Triton interpreter on the CPU: the time is the interpreter's, not a kernel's")
        return {"kind": "timed", "stats": run.stats.model_dump(), "clocks": run.clocks, "warnings": run.warnings}

    def unload(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.built is not None:
            unload(self.built)
        self.built = self.counter = self.ctx = None
        self.contexts.clear()
        gc.collect()
        if self.device != "cpu":
            import torch

            torch.cuda.empty_cache()
        return {"kind": "unloaded"}

    # -- the guarded call -----------------------------------------------------------------

    def _context(self, message: dict[str, Any]) -> WorkloadContext:
        assert self.definition is not None and self.solution is not None and self.built is not None
        workload = Workload.model_validate(message["workload"])
        ctx = self.contexts.get(workload.uuid)
        if ctx is None:
            root = message.get("dataset_root")
            ctx = self.contexts[workload.uuid] = WorkloadContext(
                definition=self.definition,
                workload=workload,
                axes=self.definition.resolve_axes(workload.axes),
                device=self.device,
                seed=int(message["seed"]),
                dataset_root=Path(root) if root else None,
                dps=self.solution.spec.destination_passing_style,
                reference=self.reference,
            )
        self.ctx = ctx
        return ctx

    def invoke(self, kwargs: dict[str, Any], dps_outputs: dict[str, Any] | None, timer: Any = None,
               around: Any = None) -> list[Any]:
        """Call the solution once with `kwargs` (plus the destination buffers), inside the
        guards: `timer.start()`/`timer.stop()` bracket the user call alone; `around()` is
        a context entered just around it (CUDA-graph capture). Returns the outputs in
        the definition's order. Raises Verdict(RUNTIME_ERROR) for anything the call
        raises (SystemExit included) and Verdict(REWARD_HACK) for a guard finding."""
        from solforge.bench.worker import format_exception

        assert self.built is not None and self.built.fn is not None and self.ctx is not None
        fn = self.built.fn
        if dps_outputs:
            kwargs = {**kwargs, **dps_outputs}
        scope = around() if around is not None else contextlib.nullcontext()
        watch = contextlib.nullcontext() if self.trusted else self.guards.watch_call(self.device)
        # The decoy guard also names the kernels that ran, from a profile of the first
        # correctness call on a GPU (a profile perturbs timing: never a timed call).
        profile = contextlib.nullcontext()
        if (self.counter is not None and self.calls == 0 and timer is None and around is None
                and self.device != "cpu" and self.solution is not None
                and self.solution.spec.language.launches_own_kernels):
            profile = self.counter.profile()
        findings = []
        try:
            with profile, watch as report:
                with scope:
                    if timer is not None:
                        timer.start()
                    ret = fn(**kwargs)
                    if timer is not None:
                        timer.stop()
                if report is not None:
                    report.set_outputs(list(dps_outputs.values()) if dps_outputs else ret)
            if report is not None:
                findings += report.findings
        except BaseException as exc:
            raise Verdict(EvaluationStatus.RUNTIME_ERROR, f"the solution raised {format_exception(exc)}") from None
        self.calls += 1
        if not self.trusted:
            if not dps_outputs:
                findings += self.guards.output_findings(ret, self.device)
            findings += self.snapshot.verify()
            if findings:
                raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in findings), findings)
        return list(dps_outputs.values()) if dps_outputs else outputs_of(ret, self.ctx)
