"""Cross-compiling a CUDA C++ solution's `.cu` sources for a GPU target with nvcc.

Each `.cu` file is compiled to a cubin for the target alone (`nvcc -cubin
-gencode arch=compute_90a,code=sm_90a -Xptxas -v`), against torch's and Python's headers
as the harness builds it (`solforge.bench.build`), with no host compile and no GPU.
ptxas' verbose log gives each `__global__` kernel's registers, spills, static shared
memory and barriers.

A kernel's block size and dynamic shared memory are chosen by the host code at launch,
which a compile does not see: the report gives the largest block the registers allow
and the occupancy at the block size that maximizes it (what
cudaOccupancyMaxPotentialBlockSize would pick), with no dynamic shared memory.
Including torch's headers makes each compile take tens of seconds on a small CPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path, PurePosixPath

from solforge.bench.crosscompile.occupancy import best_block_size, max_threads_per_block, theoretical_occupancy
from solforge.bench.crosscompile.ptxas import demangle, parse_ptxas_log, ptxas_errors
from solforge.bench.crosscompile.report import CrossCompileError
from solforge.hardware.targets import CompileTarget
from solforge.spec import Solution, Workload
from solforge.spec.trace import CompileReport


def nvcc_command(nvcc: str, source: Path, output: Path, target: CompileTarget, include_dirs: list[str]) -> list[str]:
    """The nvcc command line that compiles one `.cu` file to a cubin for `target` with
    ptxas' verbose log. The C++ standard is the one torch's headers need."""
    from solforge.bench.languages.cuda import cxx_standard

    return [nvcc, "-cubin", "-x", "cu", f"-std={cxx_standard()}", "-O3", f"-gencode={target.gencode}",
            "-Xptxas", "-v", *(f"-I{d}" for d in include_dirs), str(source), "-o", str(output)]  # fmt: skip


def _nvcc_errors(log: str) -> str:
    """nvcc's and ptxas' error lines, ptxas' first; the whole log's tail when none is marked."""
    errors = ptxas_errors(log)
    errors = [f"ptxas: {e}" for e in errors] + [ln.strip() for ln in log.splitlines()
                                                 if "error" in ln and not ln.lstrip().startswith("ptxas")]  # fmt: skip
    return "\n".join(errors[:40]) if errors else log.strip()[-4000:]


def compile_cuda(solution: Solution, workloads: list[Workload], target: CompileTarget,
                 timeout_s: float = 600.0) -> list[CompileReport]:  # fmt: skip
    """Every `__global__` kernel of the solution's `.cu` sources, compiled for `target`.

    One compile serves every workload (CUDA C++ is not specialized by shape); each report
    lists them all. Raises CrossCompileError: kind "compile" with nvcc's or ptxas' message
    (also when nvcc is not on PATH), "timeout", "no_kernel" when there is no `.cu` source
    or no kernel in it, "limit" when a kernel's registers leave no launchable block.
    """
    from torch.utils.cpp_extension import include_paths

    sources = [s for s in solution.sources if s.path.endswith(".cu")]
    if not sources:
        raise CrossCompileError("no_kernel", "no .cu source to compile (CUDA C++ embedded in Python strings is not "
                                "cross-compiled)", target=target.name)  # fmt: skip
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise CrossCompileError("compile", "nvcc not found on PATH: CUDA C++ cannot be cross-compiled here",
                                target=target.name)  # fmt: skip
    uuids = [w.uuid for w in workloads]
    reports: list[CompileReport] = []
    with tempfile.TemporaryDirectory(prefix="solforge-nvcc-") as tmp:
        root = Path(tmp)
        for src in solution.sources:
            rel = PurePosixPath(src.path)
            if rel.is_absolute() or ".." in rel.parts:
                raise CrossCompileError("compile", f"sources: path '{src.path}' must stay inside the solution")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(src.content)
        includes = [*include_paths(), sysconfig.get_paths()["include"], tmp]
        for src in sources:
            path = root / src.path
            cmd = nvcc_command(nvcc, path, path.with_suffix(".cubin"), target, includes)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=root)
            except subprocess.TimeoutExpired:
                raise CrossCompileError("timeout", f"nvcc did not finish within {timeout_s:.0f} s", src.path,
                                        target=target.name) from None  # fmt: skip
            log = proc.stdout + proc.stderr
            if proc.returncode != 0:
                raise CrossCompileError("compile", f"nvcc: {src.path} does not compile for {target.name}:\n"
                                        + _nvcc_errors(log), src.path, target=target.name)  # fmt: skip
            usages = parse_ptxas_log(log)
            names = demangle([u.name for u in usages])
            for usage in usages:
                name = names[usage.name].split("(")[0] if "(" in names[usage.name] else names[usage.name]
                shared = usage.static_shared_memory_bytes
                largest = max_threads_per_block(target, usage.registers)
                block = best_block_size(target, usage.registers, shared, usage.barriers)
                if largest == 0 or block == 0:
                    raise CrossCompileError("limit", f"{usage.registers} registers per thread and {shared} bytes of "
                                            f"shared memory leave no launchable block on {target.name}", name,
                                            target=target.name)  # fmt: skip
                reports.append(CompileReport(
                    kernel=name, target=target.name, language="cuda", workloads=uuids, specialization=src.path,
                    registers_per_thread=usage.registers, spill_store_bytes=usage.spill_store_bytes,
                    spill_load_bytes=usage.spill_load_bytes, stack_frame_bytes=usage.stack_frame_bytes,
                    static_shared_memory_bytes=shared, dynamic_shared_memory_bytes=0, barriers=usage.barriers,
                    max_threads_per_block=largest,
                    occupancy=theoretical_occupancy(target, usage.registers, shared, block, usage.barriers, "best"),
                    ptxas_warnings=list(usage.warnings),
                ))  # fmt: skip
    if not reports:
        raise CrossCompileError("no_kernel", "the .cu sources define no __global__ kernel", target=target.name)
    return reports
