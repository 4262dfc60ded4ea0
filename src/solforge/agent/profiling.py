"""The agent's `profile` tool: where a candidate spends its time, from whatever profiler
this machine has.

- CUDA with Nsight Compute (`ncu` on PATH): the key metrics of each of the candidate's
  kernels (duration, achieved DRAM bandwidth and its fraction of peak, SM throughput,
  achieved occupancy, registers per thread, shared memory per block, local-memory
  spill traffic). ncu runs a small driver in a subprocess with `--clock-control none`
  (the clocks the harness times under) and profiles only the NVTX range around one call.
- CUDA without ncu (or when ncu fails, e.g. no permission for the counters): the torch
  profiler's kernel table.
- Triton on CUDA, in addition: the compile report from each compiled kernel's metadata
  (registers, spills, shared memory, num_warps, num_stages).
- CPU: the torch profiler's op table, and for Triton and CUDA C++ the compile report of
  the kernels cross-compiled for sm_90a (`solforge.bench.crosscompile`): registers,
  spills, shared memory, occupancy, ptxas' warnings, or the compile error.

The candidate runs in a child process with the harness's scrubbed environment, under a
wall-clock limit (its process group is killed on expiry); a crash costs the profile,
never the agent's loop. Whatever is unavailable is said so in the report, never raised.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from solforge.spec import Definition, Solution, Workload, dump_json

# The NVTX range the driver wraps the profiled call in; ncu profiles only inside it.
NVTX_RANGE = "solforge_profile"
_TRITON_MARKER = "==solforge-triton-report=="

# (metric, label, unit) in report order. Names from the Nsight Compute metrics reference
# (https://docs.nvidia.com/nsight-compute/ProfilingGuide/#metrics-reference).
NCU_METRICS: tuple[tuple[str, str, str], ...] = (
    ("gpu__time_duration.sum", "duration", "ns"),
    ("dram__bytes.sum.per_second", "DRAM bandwidth", "byte/s"),
    ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "DRAM throughput", "% of peak"),
    ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "SM throughput", "% of peak"),
    ("sm__warps_active.avg.pct_of_peak_sustained_active", "achieved occupancy", "%"),
    ("launch__registers_per_thread", "registers/thread", ""),
    ("launch__shared_mem_per_block_static", "static shared mem/block", "byte"),
    ("launch__shared_mem_per_block_dynamic", "dynamic shared mem/block", "byte"),
    ("l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum", "spill loads (local)", "byte"),
    ("l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum", "spill stores (local)", "byte"),
)


@dataclass(frozen=True)
class ProfileSection:
    tool: str  # "ncu", "torch.profiler", "triton compile report"
    available: bool  # False: the text says why this tool gave nothing
    text: str


@dataclass
class ProfileReport:
    sections: list[ProfileSection] = field(default_factory=list)

    def render(self) -> str:
        return "\n\n".join(f"## {s.tool}{'' if s.available else ' (unavailable)'}\n{s.text}" for s in self.sections)


def parse_ncu_csv(text: str) -> list[dict[str, str]]:
    """Rows of `ncu --csv --page raw` output: one dict per profiled kernel, keyed by the
    header (e.g. "Kernel Name" and the metric names). ncu's own `==PROF==` lines and the
    units row are skipped."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    if not lines:
        return []
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, body = rows[0], rows[1:]
    if body and body[0] and not body[0][0].strip().isdigit():
        body = body[1:]  # the units row
    return [dict(zip(header, row)) for row in body if len(row) == len(header)]


def _number(value: str) -> float | None:
    try:
        return float(value.replace(",", ""))
    except (ValueError, AttributeError):
        return None


def format_ncu(rows: list[dict[str, str]]) -> str:
    """One block per kernel: each key metric with its unit (bandwidth in GB/s, duration in us)."""
    out = []
    for row in rows:
        lines = [f"kernel {row.get('Kernel Name', '?')} (grid {row.get('Grid Size', '?')}, "
                 f"block {row.get('Block Size', '?')})"]  # fmt: skip
        for metric, label, unit in NCU_METRICS:
            v = _number(row.get(metric, ""))
            if v is None:
                continue
            if unit == "byte/s":
                lines.append(f"  {label}: {v / 1e9:.1f} GB/s")
            elif unit == "ns":
                lines.append(f"  {label}: {v / 1e3:.2f} us")
            else:
                lines.append(f"  {label}: {v:g} {unit}".rstrip())
        out.append("\n".join(lines))
    return "\n".join(out) if out else "no kernel was profiled inside the call (does it launch a kernel?)"


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int | None, str]:
    """Run `cmd` in its own process group; returns (exit code or None on timeout, output)."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        log.seek(0)
        return code, log.read().decode(errors="replace")


def _tail(text: str, limit: int = 2000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def profile_solution(solution: Solution, definition: Definition, workload: Workload, device: str,
                     timeout_s: float = 180.0, dataset_root: Path | None = None) -> ProfileReport:  # fmt: skip
    """Profile one call of `solution` on `workload` (see the module docstring for what is
    measured where). Never raises for a profiler that is missing or fails: the report
    says so. `device` is "cpu", "cuda" or "cuda:N"; `timeout_s` limits each subprocess."""
    from solforge.bench.processes import scrubbed_env

    report = ProfileReport()
    with tempfile.TemporaryDirectory(prefix="solforge-profile-") as tmp:
        work = Path(tmp)
        (work / "definition.json").write_text(dump_json(definition))
        (work / "solution.json").write_text(solution.model_dump_json())
        (work / "workload.json").write_text(workload.model_dump_json())
        (work / "config.json").write_text(json.dumps({"device": device, "dataset_root": str(dataset_root or "")}))
        env = scrubbed_env(device)
        driver = [sys.executable, "-m", "solforge.agent.profiling", str(work)]
        on_gpu = device.startswith("cuda")
        triton = ""  # the driver's Triton compile report (JSON)
        ncu = shutil.which("ncu") if on_gpu else None
        if on_gpu and ncu is None:
            report.sections.append(ProfileSection("ncu", False, "ncu (Nsight Compute) is not on PATH"))
        if ncu is not None:
            names = ",".join(m for m, _, _ in NCU_METRICS)
            code, out = _run([ncu, "--clock-control", "none", "--target-processes", "all", "--nvtx",
                              "--nvtx-include", f"{NVTX_RANGE}/", "--metrics", names, "--csv", "--page", "raw",
                              *driver, "ncu"], env, work, timeout_s)  # fmt: skip
            text, triton = _split_triton(out)
            rows = parse_ncu_csv(text) if code == 0 else []
            if rows:
                report.sections.append(ProfileSection("ncu", True, format_ncu(rows)))
            else:
                why = "timed out" if code is None else f"exited with {code}" if code else "profiled no kernel"
                report.sections.append(ProfileSection("ncu", False, f"ncu {why}:\n{_tail(text)}"))
        if not report.sections or not report.sections[-1].available:
            code, out = _run([*driver, "torch"], env, work, timeout_s)
            table, triton = _split_triton(out)
            ok = code == 0
            why = "" if ok else ("timed out" if code is None else f"the driver exited with {code}") + ":\n"
            report.sections.append(ProfileSection("torch.profiler", ok, why + _tail(table, 6000)))
        if not on_gpu and solution.spec.language.value in ("triton", "cuda"):
            from solforge.bench.crosscompile import compile_report_section  # ptxas' figures for the target chip

            report.sections.append(ProfileSection(*compile_report_section(solution, definition, [workload],
                                                                          timeout_s=timeout_s,
                                                                          dataset_root=dataset_root)))  # fmt: skip
        elif solution.spec.language.value == "triton":
            report.sections.append(_triton_section(triton, on_gpu))
    return report


def _split_triton(output: str) -> tuple[str, str]:
    """The driver's output without its Triton report line, and that report's JSON. Noise
    lines of the profiler's own logging (USDT:, STAGE:) are dropped."""
    kept, report = [], ""
    for line in output.splitlines():
        if line.startswith(_TRITON_MARKER):
            report = line[len(_TRITON_MARKER):]
        elif not line.startswith(("USDT:", "STAGE:")):
            kept.append(line)
    return "\n".join(kept), report


def _triton_section(text: str, on_gpu: bool) -> ProfileSection:
    if not on_gpu:
        return ProfileSection("triton compile report", False,
                              "no compile on the CPU: Triton runs under its interpreter")  # fmt: skip
    try:
        kernels = json.loads(text.strip() or "null")
    except json.JSONDecodeError:
        kernels = None
    if not kernels:
        return ProfileSection("triton compile report", False,
                              "no compiled Triton kernel found in the solution's modules")  # fmt: skip
    lines = [f"{k['name']}: {k['n_regs']} registers/thread, {k['n_spills']} spilled, {k['shared']} bytes shared "
             f"memory, num_warps={k['num_warps']}, num_stages={k['num_stages']}" for k in kernels]  # fmt: skip
    return ProfileSection("triton compile report", True, "\n".join(lines))


# -- the driver, run as `python -m solforge.agent.profiling DIR MODE` ----------------------


def _triton_kernels(namespaces: list[dict]) -> list[dict[str, object]]:
    """Compiled kernels of the Triton functions found in the solution's module namespaces."""
    from triton.runtime.jit import JITFunction

    out: list[dict[str, object]] = []
    seen: set[int] = set()
    for ns in namespaces:
        for value in list(ns.values()):
            fn = value
            while fn is not None and not isinstance(fn, JITFunction):
                fn = getattr(fn, "fn", None)  # Autotuner and Heuristics wrap the JITFunction
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            # triton >= 3.2 keeps (kernel_cache, ...) per device; older releases `cache[device]`
            caches = [c[0] for c in getattr(fn, "device_caches", {}).values()]
            caches = caches or list(getattr(fn, "cache", {}).values())
            for cache in caches:
                for kernel in cache.values():
                    meta = getattr(kernel, "metadata", None)
                    if meta is None:
                        continue
                    out.append({"name": getattr(kernel, "name", fn.__name__), "n_regs": getattr(kernel, "n_regs", "?"),
                                "n_spills": getattr(kernel, "n_spills", "?"), "shared": getattr(meta, "shared", "?"),
                                "num_warps": getattr(meta, "num_warps", "?"),
                                "num_stages": getattr(meta, "num_stages", "?")})  # fmt: skip
    return out


def _driver(work: Path, mode: str) -> int:
    import torch

    from solforge.bench.build import build_solution
    from solforge.bench.inputs import make_inputs
    from solforge.spec import load_definition

    config = json.loads((work / "config.json").read_text())
    device = config["device"]
    definition = load_definition(work / "definition.json")
    solution = Solution.model_validate_json((work / "solution.json").read_text())
    workload = Workload.model_validate_json((work / "workload.json").read_text())
    axes = definition.resolve_axes(workload.axes)
    src = work / "src"
    src.mkdir()
    built = build_solution(solution, definition, src, device, timeout_s=600.0)
    if built.fn is None:
        print(f"the solution built but cannot run on {device}: {built.log}")
        return 3
    root = Path(config["dataset_root"]) if config["dataset_root"] else None
    kwargs = dict(make_inputs(definition, workload, axes, 0, "normal", device, root))
    if solution.spec.destination_passing_style:
        for name, spec in definition.outputs.items():
            kwargs[name] = torch.empty(definition.shape_of(spec, axes), dtype=spec.dtype.to_torch(), device=device)
    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    built.fn(**kwargs)  # warm-up: JIT compilation and autotuning stay out of the profile
    sync()
    if mode == "ncu":
        torch.cuda.nvtx.range_push(NVTX_RANGE)
        built.fn(**kwargs)
        sync()
        torch.cuda.nvtx.range_pop()
    else:
        _torch_table(built.fn, kwargs, sync, on_gpu, workload)
    if solution.spec.language.value == "triton" and on_gpu:
        print(_TRITON_MARKER + json.dumps(_triton_kernels(built.namespaces)), flush=True)
    return 0


def _torch_table(fn, kwargs: dict, sync, on_gpu: bool, workload: Workload) -> None:
    import torch

    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            fn(**kwargs)
            sync()
    sort = "device_time_total" if on_gpu else "self_cpu_time_total"
    print(f"3 calls on {workload.solforge.label or workload.axes}; times are totals over the 3 calls")
    print(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    sys.exit(_driver(Path(sys.argv[1]), sys.argv[2]))
