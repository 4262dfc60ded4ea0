"""Speed-of-light reports and speedups on traces, against baseline latencies measured once.

`run_bench` uses these on the traces it just measured; a search measures its baselines
once per run (`baseline_latencies`), keeps them, and attaches SOL reports to each
candidate's traces with `attach_sol`. The peaks come from the `Device` the traces were
measured on (`Device.peaks`: calibrated ceilings when measured, else the datasheet).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from solforge.spec import Definition, EvaluationStatus, Trace, Workload

if TYPE_CHECKING:
    from solforge.hardware import Device
    from solforge.roofline.counting import Work


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


def timing_spread(trace: Trace) -> tuple[float, bool] | None:
    """(IQR / median of the trace's timed samples, a fraction; whether the harness marked
    the timing unstable: too few samples or too wide a spread even after its re-run), for a
    trace with a real measurement; None otherwise."""
    ms = measured_latency_ms(trace)
    timing = trace.evaluation.solforge.timing if trace.evaluation is not None else None
    if ms is None or timing is None or timing.median_ms <= 0:
        return None
    return timing.iqr_ms / timing.median_ms, timing.unstable


def baseline_spreads(baselines: dict[str, list[Trace]]) -> dict[str, dict[str, tuple[float, bool]]]:
    """Baseline name -> workload uuid -> `timing_spread`, over the traces that have one."""
    return {
        name: {t.workload.uuid: s for t in traces if (s := timing_spread(t)) is not None}
        for name, traces in baselines.items()
    }


_WORK: dict[tuple[str, str, str], Work | str] = {}
_WORK_LOCK = threading.Lock()


def work_of(definition: Definition, workload: Workload) -> Work | str:
    """`count_work(definition, workload)`, cached per (definition, workload) for the process;
    a one-line string saying why when counting failed (a reference whose meta dispatch
    cannot be traced), so that the caller keeps the latency and says why there is no SOL."""
    from solforge.roofline.counting import count_work

    key = (definition.model_dump_json(), workload.uuid, workload.model_dump_json())
    with _WORK_LOCK:
        if key in _WORK:
            return _WORK[key]
    try:
        work: Work | str = count_work(definition, workload)
    except Exception as exc:  # any failure of the reference under meta tensors: keep the latency
        work = f"{type(exc).__name__}: {exc}"
    with _WORK_LOCK:
        _WORK[key] = work
    return work


def attach_sol(
    definition: Definition,
    traces: list[Trace],
    baselines: dict[str, dict[str, float]],
    device: Device,
) -> None:
    """Fill, in place, every PASSED trace with a real measurement: `baseline_latency_ms`;
    with the eager baseline T_b, `performance.reference_latency_ms` and `speedup_factor`
    (T_b / latency); with the compile baseline, `speedup_vs_compile`; and the SOL report
    `roofline.sol_report(work, latency, T_b, datasheet peaks, calibrated peaks)` at the
    peaks of `device` (`Device.peaks`). `baselines` is what `baseline_latencies` returns
    (latencies in ms). A PASSED trace whose time is not a measurement gets a warning
    instead. Raises nothing for a workload whose work cannot be counted: its trace gets
    a warning.
    """
    from solforge.roofline.sol import sol_report

    peaks = device.peaks
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
        work = work_of(definition, trace.workload)
        if isinstance(work, str):
            ev.solforge.warnings.append(f"no SOL report: counting the work failed ({work})")
            continue
        ev.solforge.sol = sol_report(work, latency, eager, peaks.datasheet, peaks.calibrated)
