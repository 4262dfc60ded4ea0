"""How the search evaluates: the `Evaluator` interface the controller talks to, and the
local evaluator over the harness (`solforge.bench`), one evaluation at a time per device.

The evaluator owns what every evaluation of a run shares: the definition, the harness
options, the baseline latencies measured once at the start of the run, and the device
whose peaks SOL scores are computed against. The search only ever sees the Traces it
returns, with their SOL reports attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from solforge.bench import BenchConfig, attach_sol, baseline_latencies, detect_device, evaluate, run_bench
from solforge.spec import Definition, Solution, SpecError, Trace, Workload


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


class Evaluator(Protocol):
    """What the controller evaluates candidates through."""

    devices: tuple[str, ...]  # one evaluation at a time runs on each
    baselines: dict[str, dict[str, float]] | None  # baseline name -> workload uuid -> latency, ms

    def measure_baselines(self, workloads: Sequence[Workload], names: Sequence[str]) -> dict[str, dict[str, float]]:
        """Measure (and keep) the baselines SOL scores are computed against."""
        ...

    def start(self) -> None:
        """Make the devices ready before the first measurement (e.g. calibrate them)."""
        ...

    def evaluate(self, solution: Solution, workloads: Sequence[Workload], device: str) -> list[Trace]:
        """One Trace per workload, in order, each with its SOL report; raises only for a
        failure of the evaluation infrastructure, never for what the kernel does."""
        ...


class LocalEvaluator:
    """The harness on this machine's devices (`solforge.bench.evaluate`), with SOL
    reports against the run's baselines (`attach_sol`).

    `baselines` (name -> workload uuid -> latency in ms) must be set, by
    `measure_baselines` or from a resumed run, before the first evaluation.
    """

    def __init__(self, definition: Definition, devices: Sequence[str], config: BenchConfig) -> None:
        self.definition, self.config = definition, config
        self.devices = tuple(devices)
        self.baselines: dict[str, dict[str, float]] | None = None
        self._detected = None

    def start(self) -> None:
        ensure_ceilings(device_kind(self.devices[0]))

    def evaluate(self, solution: Solution, workloads: Sequence[Workload], device: str) -> list[Trace]:
        assert self.baselines is not None, "LocalEvaluator: baselines are measured before any evaluation"
        if self._detected is None:
            self._detected = detect_device(self.devices[0])
        traces = evaluate(self.definition, list(workloads), solution, device, self.config)
        attach_sol(self.definition, traces, self.baselines, self._detected)
        return traces

    def measure_baselines(self, workloads: Sequence[Workload], names: Sequence[str]) -> dict[str, dict[str, float]]:
        """Median latency per workload uuid of each baseline ("eager", "compile"), in ms,
        measured once with the same harness as every candidate; kept as `baselines`."""
        result = run_bench(self.definition, list(workloads), [], self.devices[0], baselines=tuple(names),
                           config=self.config)
        self.baselines = baseline_latencies(result.baselines)
        return self.baselines
