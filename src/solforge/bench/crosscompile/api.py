"""`cross_compile`: the one call the harness, the search, the agent and the CLI make.

Triton solutions are specialized by running their own `run` (see `triton`), so by
default that happens in a child process (`python -m solforge.bench.crosscompile.worker`)
under the harness's scrubbed environment and a wall-clock limit, with its process group
killed on expiry: a hang, a crash or a hostile candidate costs its compile, never the
caller. CUDA C++ is compiled by nvcc, a subprocess already, and never runs the
solution's code. The isolation covers the caller's process, memory and environment
variables; it is not a sandbox (the child can read the file system and the network).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from solforge.bench.crosscompile.report import CrossCompileError
from solforge.hardware.targets import DEFAULT_TARGET, CompileTarget, target_by_name
from solforge.spec import Definition, Language, Solution, Workload, dump_json
from solforge.spec.trace import CompileReport

DEFAULT_TIMEOUT_S = 300.0


def can_cross_compile(solution: Solution) -> bool:
    """Whether the solution has GPU kernels of its own to compile: Triton, or CUDA C++ with
    `.cu` sources. PyTorch, Python and numba solutions have none."""
    lang = solution.spec.language
    return lang is Language.triton or (lang is Language.cuda and any(s.path.endswith(".cu") for s in solution.sources))


def cross_compile(solution: Solution, definition: Definition, workloads: list[Workload],
                  target: str | CompileTarget, *, isolate: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S,
                  dataset_root: Path | None = None) -> list[CompileReport]:  # fmt: skip
    """Compile every kernel `solution` launches on `workloads` for `target`, on this machine,
    with no GPU: one CompileReport per distinct kernel specialization (its `workloads`
    lists the uuids that compile to it).

    Triton: each workload's launches are specialized from its shapes and dtypes as the
    launcher would, then compiled with Triton and ptxas. CUDA C++: each `.cu` source is
    compiled with nvcc once for all workloads. `isolate` runs a Triton solution's code in a
    child process (False: in this one, for trusted sources such as the seeds; the
    compiles are then cached for the process). `timeout_s` limits the whole call.

    Raises CrossCompileError (see its `kind`) with Triton's, ptxas' or nvcc's own message
    for a kernel that does not compile, cannot be specialized, or exceeds the target's
    limits; SpecError for an unknown target name; ValueError when `can_cross_compile` is
    False. Not run on a GPU: the reports are ptxas' figures, not measurements.
    """
    target = target if isinstance(target, CompileTarget) else target_by_name(target)
    if not can_cross_compile(solution):
        raise ValueError(f"solution '{solution.name}' ({solution.spec.language.value}) has no GPU kernel of its own "
                         "to cross-compile (expected Triton, or CUDA C++ with .cu sources)")  # fmt: skip
    if solution.spec.language is Language.cuda:
        from solforge.bench.crosscompile.cuda import compile_cuda

        return compile_cuda(solution, workloads, target, timeout_s)
    if not isolate:
        from solforge.bench.crosscompile.triton import compile_triton

        return compile_triton(solution, definition, workloads, target, dataset_root)
    return _in_child(solution, definition, workloads, target, timeout_s, dataset_root)


def _in_child(solution: Solution, definition: Definition, workloads: list[Workload], target: CompileTarget,
              timeout_s: float, dataset_root: Path | None) -> list[CompileReport]:  # fmt: skip
    from solforge.bench.processes import scrubbed_env

    with tempfile.TemporaryDirectory(prefix="solforge-crosscompile-") as tmp:
        work = Path(tmp)
        (work / "definition.json").write_text(dump_json(definition))
        (work / "solution.json").write_text(solution.model_dump_json())
        (work / "workloads.json").write_text(json.dumps([w.model_dump(mode="json") for w in workloads]))
        (work / "request.json").write_text(json.dumps({"target": target.name, "dataset_root": str(dataset_root or "")}))
        log = work / "log.txt"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "solforge.bench.crosscompile.worker", str(work)],
                                    cwd=work, env=scrubbed_env("cuda"), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise CrossCompileError("timeout", f"the cross-compile did not finish within {timeout_s:.0f} s",
                                        target=target.name) from None  # fmt: skip
        result = work / "result.json"
        if not result.exists():
            tail = log.read_text(errors="replace").strip()[-3000:]
            raise CrossCompileError("compile", f"the cross-compile process exited with {code} and no result:\n{tail}",
                                    target=target.name)  # fmt: skip
        data = json.loads(result.read_text())
    if "error" in data:
        raise CrossCompileError(**data["error"])
    return [CompileReport.model_validate(r) for r in data["reports"]]


def compile_report_section(solution: Solution, definition: Definition, workloads: list[Workload],
                           target: str = DEFAULT_TARGET, timeout_s: float = DEFAULT_TIMEOUT_S,
                           dataset_root: Path | None = None) -> tuple[str, bool, str]:  # fmt: skip
    """What the agent's `profile` tool shows on a machine without a GPU: (title, available,
    text), the compile report of `cross_compile` for `target` as plain text, or the
    compile error itself (a verdict worth showing, so still available). Never raises."""
    from solforge.bench.crosscompile.report import format_reports

    title = f"compile report for {target} (cross-compiled without a GPU: ptxas' figures, not a measurement)"
    if not can_cross_compile(solution):
        return title, False, f"nothing to cross-compile for a {solution.spec.language.value} solution"
    try:
        reports = cross_compile(solution, definition, workloads, target, timeout_s=timeout_s, dataset_root=dataset_root)
    except CrossCompileError as exc:
        return title, True, f"COMPILE ERROR ({exc.kind}): {exc.one_line()}\n{exc.message}"
    return title, True, format_reports(reports, {w.uuid: w.label for w in workloads})
