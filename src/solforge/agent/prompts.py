"""What the agent is told: the system prompt (problem contract, device, SOL bound, rules,
current best), the task message of a step, and the stall supervisor's redirection.

Held-out workloads never appear here: the workloads and traces these functions get
come from a `SearchContext` (the search workloads and the latest search round of a
parent), which cannot hold a held-out one.

The SOL bound per workload is the roofline time of `solforge.roofline.sol_bound` at the
device's calibrated ceilings when `solforge calibrate` has run, else at its datasheet
peaks; on a device with neither (a CPU that was never calibrated, an unknown GPU) the
bound is omitted and the prompt says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from solforge.search.fitness import geometric_mean
from solforge.spec import Definition, EvaluationStatus, Language, Trace, Workload

if TYPE_CHECKING:
    from solforge.roofline import SolBound
    from solforge.search.context import EvaluatedCandidate


# -- the SOL bound -----------------------------------------------------------------------


@dataclass
class SolSummary:
    """SOL bounds of the search workloads on one device, or why there are none."""

    device_name: str
    peaks_source: str | None  # "calibrated" or "datasheet"; None when no bound is available
    bounds: dict[str, SolBound] = field(default_factory=dict)  # workload uuid -> bound
    note: str = ""  # why a bound is missing, or how the device was matched

    def sol_ms(self, uuid: str) -> float | None:
        b = self.bounds.get(uuid)
        return b.time_ms if b is not None else None


def sol_summary(definition: Definition, workloads: Sequence[Workload], device: str) -> SolSummary:
    """The SOL bound of each of `workloads` (the search workloads) on `device` ("cpu", "cuda", "cuda:N"), in ms:
    `solforge.roofline.sol_bound(count_work(...), peaks)`, i.e. max(FLOPs / peak FLOP/s,
    compulsory bytes / DRAM bandwidth), the roofline model (Williams, Waterman & Patterson,
    CACM 2009) as SOL-ExecBench applies it, at the calibrated ceilings when measured,
    else the datasheet peaks. Never raises: a device that cannot be detected, missing
    peaks, or work that cannot be counted leave the bound out, with the reason in `note`."""
    from solforge.hardware import detect
    from solforge.roofline import count_work, sol_bound
    from solforge.spec import SpecError

    try:
        detected = detect(device)
    except SpecError as exc:
        return SolSummary(device, None, note=f"device not detected ({exc})")
    peaks = detected.peaks.used  # calibrated, else datasheet: the hardware's one rule (`choose_peaks`)
    if peaks is None:
        return SolSummary(detected.name, None, note=f"no SOL bound on this device: {detected.reason}")
    summary = SolSummary(detected.name, peaks.source, note=detected.reason)
    for wl in workloads:
        try:
            summary.bounds[wl.uuid] = sol_bound(count_work(definition, wl), peaks)
        except (SpecError, ValueError) as exc:
            summary.note += f"; no bound for {wl.label}: {exc}"
    return summary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g} ms"


# -- results of evaluations --------------------------------------------------------------


def trim(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping its head and tail (errors name the
    cause at the top and the failing line at the bottom)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = max(limit // 2 - 20, 1)
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"


def sol_fraction_of(trace: Trace, sol: SolSummary | None) -> float | None:
    """The SOL fraction T_SOL / T_k (SOL-ExecBench's definition, capped at 1) of a PASSED
    trace: the harness's figure when it filled one, else from
    `sol`'s bound and the measured median; None for an untimed run (Triton interpreter)."""
    ev = trace.evaluation
    if ev is None or ev.status is not EvaluationStatus.PASSED or ev.performance is None:
        return None
    if ev.solforge.sol is not None and ev.solforge.sol.sol_fraction is not None:
        return ev.solforge.sol.sol_fraction
    timing = ev.solforge.timing
    sol_ms = sol.sol_ms(trace.workload.uuid) if sol is not None else None
    untimed = timing is not None and not timing.is_performance_measurement
    if sol_ms is None or ev.performance.latency_ms <= 0 or untimed:
        return None
    return min(1.0, sol_ms / ev.performance.latency_ms)


def format_traces(traces: Sequence[Trace], sol: SolSummary | None, log_chars: int = 1500) -> str:
    """One line per search workload (status, latency_ms, SOL bound, SOL fraction), the
    failures' logs (one copy when several workloads share it), and a summary line."""
    traces = [t for t in traces if t.evaluation is not None]
    lines, logs = [], {}
    fractions = []
    for t in traces:
        ev = t.evaluation
        assert ev is not None
        line = f"- {t.workload.label} [{t.workload.uuid}]: {ev.status.value}"
        if ev.status is EvaluationStatus.PASSED and ev.performance is not None:
            timing = ev.solforge.timing
            untimed = timing is not None and not timing.is_performance_measurement
            line += f", latency_ms={ev.performance.latency_ms:.4g}"
            line += " (not a performance measurement)" if untimed else ""
            frac = sol_fraction_of(t, sol)
            sol_ms = sol.sol_ms(t.workload.uuid) if sol is not None else None
            if sol_ms is not None:
                line += f", SOL {_ms(sol_ms)}"
            if frac is not None:
                fractions.append(frac)
                line += f", SOL fraction {frac:.3f} ({1 / frac:.2f}x from SOL)"
        else:
            if ev.correctness is not None and ev.status is EvaluationStatus.INCORRECT_NUMERICAL:
                line += (f" (max abs error {ev.correctness.max_absolute_error:.3g}, "
                         f"max rel error {ev.correctness.max_relative_error:.3g})")  # fmt: skip
            text = "\n".join([*(f"{g.guard}: {g.message}" for g in ev.solforge.guard_findings), ev.log]).strip()
            if text:
                logs.setdefault(text, []).append(t.workload.label)
        lines.append(line)
    for text, labels in logs.items():
        lines.append(f"log ({', '.join(labels)}):\n{trim(text, log_chars)}")
    passed = sum(1 for t in traces if t.evaluation.status is EvaluationStatus.PASSED)
    summary = f"passed {passed}/{len(traces)} search workloads"
    if passed < len(traces):
        summary += "; a candidate failing any search workload has fitness 0"
    elif fractions and len(fractions) == len(traces):
        summary += f"; geometric-mean SOL fraction {geometric_mean(fractions):.3f}"
    return "\n".join([summary, *lines])


def best_summary(parent: EvaluatedCandidate, traces: Sequence[Trace], sol: SolSummary | None) -> str:
    """The parent and its latest search round (`traces`), formatted."""
    head = f"candidate #{parent.candidate_id} ({parent.solution.name}, family {parent.family}"
    if not traces:
        return head + "): not evaluated yet"
    return f"{head}, fitness {parent.fitness:.4f}):\n" + format_traces(traces, sol)


# -- the prompts -------------------------------------------------------------------------

_LANGUAGE_NOTES = {
    Language.triton: """\
Write Triton kernels (`@triton.jit`) and launch them from the entry point; torch is for
allocation and views only: the computation must run in your own kernels (a solution
that launches none of its own kernels is a decoy: REWARD_HACK). Choose BLOCK sizes as
powers of two, mask the tails, accumulate reductions in float32. On a CPU the harness
runs Triton under its interpreter (TRITON_INTERPRET=1): correctness only, the latency
is not a performance measurement.""",
    Language.cuda: """\
Write CUDA C++: a `.cu` source whose host function (the entry point `file.cu::fn`)
takes torch::Tensor arguments in the definition's order and launches your kernels; the
harness builds it with torch.utils.cpp_extension.load_inline. Alternatively a `.py`
entry point may build and call your own kernels. Check launch errors, use the current
stream (at::cuda::getCurrentCUDAStream()), accumulate in float32. Library kernels
(cuBLAS, cuDNN) are allowed only where the definition does not forbid them.""",
    Language.numba: """\
Write numba kernels: `@numba.njit` (optionally parallel=True with prange) on the CPU,
`@numba.cuda.jit` on a GPU, called from the entry point on the tensors' data. numpy has
no bfloat16: pass a bf16 tensor's raw bits, `t.view(torch.int16).numpy().view(np.uint16)`
(zero-copy), and convert with bit operations (bf16 -> fp32: shift left by 16; fp32 ->
bf16: round to nearest even on the bits). The work must run in your own kernels (a
solution that launches none is a decoy: REWARD_HACK).""",
    Language.pytorch: """\
Write PyTorch: tensor operations only, no custom kernels. Gains come from fewer passes
over memory, fewer temporaries and fewer launches.""",
}
_LANGUAGE_NOTES[Language.python] = _LANGUAGE_NOTES[Language.pytorch]

TOOLS_GUIDE = """\
# How to work
Read the sources (read_file), change them (apply_patch for targeted edits,
write_file for new files or rewrites), run `evaluate` after every change (it builds,
checks correctness against the reference on fresh inputs, and times the search
workloads), use `profile` to see where the time goes, `lineage` for what earlier
versions did and which directions failed, and `knowledge` for the optimization playbook
and seed kernels. When the candidate is correct and faster, call `submit` with a
rationale: what you changed and why it moves the kernel toward SOL. Every turn counts
against a budget: at most {max_turns} turns this step."""


def _signature(definition: Definition, dps: bool) -> str:
    names = list(definition.inputs) + (list(definition.outputs) if dps else [])
    return ", ".join(names)


def _tensor_lines(definition: Definition) -> list[str]:
    out = []
    for kind, specs in (("input", definition.inputs), ("output", definition.outputs)):
        for name, spec in specs.items():
            shape = "scalar" if spec.shape is None else "[" + ", ".join(spec.shape) + "]"
            about = f" ({spec.description})" if spec.description else ""
            out.append(f"- {kind} `{name}`: {spec.dtype.value} {shape}{about}")
    return out


def _workload_table(definition: Definition, workloads: Sequence[Workload], sol: SolSummary | None) -> list[str]:
    lines = []
    for wl in workloads:
        axes = definition.resolve_axes(wl.axes)
        shapes = ", ".join(f"{n} {tuple(definition.shape_of(s, axes))}" for n, s in definition.inputs.items()
                           if s.shape is not None)  # fmt: skip
        line = f"- {wl.label} [{wl.uuid}]: {shapes}"
        bound = sol.bounds.get(wl.uuid) if sol is not None else None
        if bound is not None:
            line += (f"; SOL {_ms(bound.time_ms)} ({bound.binding.value}-bound: memory {_ms(bound.memory_ms)}, "
                     f"compute {_ms(bound.compute_ms)})")  # fmt: skip
        lines.append(line)
    return lines


def system_prompt(definition: Definition, language: Language, entry_point: str, dps: bool,
                  workloads: Sequence[Workload], sol: SolSummary, best: str, how_to_work: str) -> str:  # fmt: skip
    """The system prompt of an agent step: the problem contract (signature, DPS, dtypes,
    shapes per search workload), the device and SOL bound with its binding side, the
    rules (the definition's forbidden calls included), the current best with its
    per-workload gap to SOL, and `how_to_work` (the tools of the loop, `TOOLS_GUIDE`, or
    an external agent's workspace guide). `workloads` are the search workloads."""
    fn = entry_point.partition("::")[2]
    tolerances = sorted({o.dtype for o in definition.outputs.values()}, key=lambda d: d.value)
    tol_text = "; ".join(f"{d.value}: atol {t.atol:g}, rtol {t.rtol:g}, on {t.required_matched_ratio:.1%} of elements"
                         for d in tolerances for t in [definition.tolerance_for(d)])  # fmt: skip
    outputs = ", ".join(definition.outputs)
    if dps:
        returns = f"The outputs ({outputs}) are passed preallocated (their contents are garbage) and must be " \
                  "written in place; return None."
    elif len(definition.outputs) > 1:
        returns = f"Return the outputs as new tensors, a tuple in this order: {outputs}."
    else:
        returns = "Return the output as new tensors."
    forbidden = definition.solforge.forbidden_calls
    if sol.peaks_source is not None:
        device_text = (f"Device: {sol.device_name}. SOL bound per workload at the {sol.peaks_source} peaks "
                       "(roofline: max(FLOPs / peak FLOP/s, compulsory bytes / DRAM bandwidth)); "
                       "the SOL fraction is SOL time / your latency, 1.0 is the speed of light.")  # fmt: skip
    else:
        device_text = f"Device: {sol.device_name}. SOL bound omitted: {sol.note}. Latencies are still measured."
    rules = [
        "- Forbidden calls: " + (", ".join(f"`{c}`" for c in forbidden) or "none beyond the rules below") + ".",
        "- No caching across calls: every call gets fresh inputs at fresh addresses; compute the outputs every time.",
        "- No side streams, no threads, no subprocesses; do not touch timers, synchronization or the harness.",
        "- Outputs are plain tensors of the declared shapes and dtypes on the inputs' device (no lazy or subclassed "
        "tensors); inputs must not be modified.",
    ]
    parts = [
        "You are an expert GPU kernel engineer. You improve one candidate kernel per step of solforge, an "
        "evolutionary search for kernels that approach the hardware's speed of light (SOL). The harness, "
        "not you, decides correctness and speed.",
        f"# Problem: {definition.name} (op type {definition.op_type})",
        definition.description or "",
        "Reference (the specification; your kernel must match it within tolerance):\n"
        f"```python\n{definition.reference.strip()}\n```",
        "\n".join(_tensor_lines(definition)) + f"\nTolerance: {tol_text}.",
        f"# Contract\nLanguage: {language.value}. Entry point `{entry_point}`: "
        f"`def {fn}({_signature(definition, dps)})`, called with keyword arguments named exactly so. {returns}",
        "Search workloads (the shapes you are measured on; fitness is the geometric mean SOL score over them, "
        "0 if any fails):\n" + "\n".join(_workload_table(definition, workloads, sol)),
        device_text,
        "# Rules (the harness checks them; a violation is REWARD_HACK and scores 0)\n" + "\n".join(rules),
        f"# Language notes\n{_LANGUAGE_NOTES.get(language, '')}",
        f"# Current best\n{best}",
        how_to_work,
    ]
    return "\n\n".join(p for p in parts if p)


def task_message(files: Sequence[str], parent: str, direction: str | None, untried: Sequence[str]) -> str:
    """The first user message of a step: what the workspace holds, and where to go."""
    parts = [f"The workspace holds {parent}: {', '.join(files)}. Make it faster while keeping it correct."]
    if direction:
        parts.append(redirect_message(direction, untried))
    return "\n\n".join(parts)


def redirect_message(direction: str, untried: Sequence[str]) -> str:
    """The stall supervisor's hint, turned toward playbook techniques this run has not tried."""
    text = f"The search has stalled; the supervisor asks for a new direction: {direction}."
    if untried:
        text += (" Playbook techniques no candidate of this run has tried yet: " + "; ".join(untried) + ". Pick one "
                 "that fits this kernel (read it with the knowledge tool) rather than tuning the current one.")
    return text


def untried_techniques(definition: Definition, language: Language, rationales: Iterable[str]) -> list[str]:
    """Titles of the playbook files that apply to the definition's op type and `language`
    and that no rationale of this run mentions (by title or file stem, case-insensitive).
    Empty when the knowledge base is not installed."""
    try:
        from solforge.knowledge import playbook_paths, playbook_sections
    except ImportError:
        return []
    said = " ".join(rationales).lower()
    out = []
    for path in playbook_paths():
        first = playbook_sections(path)[0]
        if definition.op_type not in first.op_types or language.value not in first.languages:
            continue
        title = first.file_title
        if title.lower() not in said and path.stem.replace("_", " ") not in said.replace("_", " "):
            out.append(title)
    return out
