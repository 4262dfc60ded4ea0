"""Speed-of-light reports and speedups on traces, against baseline latencies measured once.

`run_bench` uses these on the traces it just measured; a search measures its baselines
once per run (`baseline_latencies`), keeps them, and attaches SOL reports to each
candidate's traces with `attach_sol`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from solforge.spec import Definition, EvaluationStatus, Trace, Workload

if TYPE_CHECKING:
    from solforge.hardware import DetectedDevice


@functools.lru_cache(maxsize=None)
def _detect(device: str) -> DetectedDevice:
    from solforge.hardware import detect

    return detect(device)


def normalize_device(device: str) -> str:
    """'cpu' or 'cuda:N' for any device string `hardware.detect` accepts; SpecError otherwise."""
    from solforge.hardware.detect import parse_device

    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"


def detect_device(device: str) -> DetectedDevice:
    """`hardware.detect(device)`, once per process and device ('cuda' and 'cuda:0' are one)."""
    return _detect(normalize_device(device))


def measured_latency_ms(trace: Trace) -> float | None:
    """The median latency of a PASSED trace, in ms; None when it failed or its time is
    not a performance measurement (the Triton interpreter)."""
    ev = trace.evaluation
    if ev is None or ev.status is not EvaluationStatus.PASSED or ev.performance is None:
        return None
    if ev.solforge.timing is not None and not ev.solforge.timing.is_performance_measurement:
        return None
    return ev.performance.latency_ms if ev.performance.latency_ms > 0 else None


def baseline_latencies(baselines: dict[str, list[Trace]]) -> dict[str, dict[str, float]]:
    """Baseline name ('eager', 'compile') -> workload uuid -> median latency in ms, over the
    traces that passed with a real measurement."""
    return {
        name: {t.workload.uuid: ms for t in traces if (ms := measured_latency_ms(t)) is not None}
        for name, traces in baselines.items()
    }


_WORK: dict[tuple[str, str, str], Any] = {}


def _work(definition: Definition, workload: Workload) -> Any:
    """roofline.count_work, cached per (definition, workload); a string when counting failed."""
    from solforge.roofline import count_work

    key = (definition.model_dump_json(), workload.uuid, workload.model_dump_json())
    if key not in _WORK:
        try:
            _WORK[key] = count_work(definition, workload)
        except Exception as exc:  # a reference whose meta-dispatch cannot be traced: keep the latency
            _WORK[key] = f"{type(exc).__name__}: {exc}"
    return _WORK[key]


def attach_sol(
    definition: Definition,
    traces: list[Trace],
    baselines: dict[str, dict[str, float]],
    detected: DetectedDevice,
) -> None:
    """Fill, in place, every PASSED trace with a real measurement: `baseline_latency_ms`;
    with the eager baseline T_b, `performance.reference_latency_ms` and `speedup_factor`
    (T_b / latency); with the compile baseline, `speedup_vs_compile`; and the SOL report
    `roofline.sol_report(work, latency, T_b, datasheet peaks, calibrated peaks)`.
    `baselines` is what `baseline_latencies` returns (latencies in ms). A PASSED trace
    whose time is not a measurement gets a warning instead. Raises nothing for a
    workload whose work cannot be counted: its trace gets a warning.
    """
    from solforge.roofline import sol_report

    datasheet, calibrated = detected.datasheet_peaks(), detected.calibrated_peaks()
    for trace in traces:
        ev = trace.evaluation
        latency = measured_latency_ms(trace)
        if ev is None or latency is None:
            if ev is not None and ev.status is EvaluationStatus.PASSED:
                ev.solforge.warnings.append("not a performance measurement: no SOL report or speedups")
            continue
        uuid = trace.workload.uuid
        eager = baselines.get("eager", {}).get(uuid)
        compiled = baselines.get("compile", {}).get(uuid)
        ev.solforge.baseline_latency_ms = {k: v for k, v in (("eager", eager), ("compile", compiled)) if v}
        if eager is not None and ev.performance is not None:
            ev.performance.reference_latency_ms = eager
            ev.performance.speedup_factor = eager / latency
        if compiled is not None:
            ev.solforge.speedup_vs_compile = compiled / latency
        work = _work(definition, trace.workload)
        if isinstance(work, str):
            ev.solforge.warnings.append(f"no SOL report: counting the work failed ({work})")
            continue
        ev.solforge.sol = sol_report(work, latency, eager, datasheet, calibrated)
