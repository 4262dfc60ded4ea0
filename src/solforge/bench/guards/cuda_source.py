"""The static guard's textual check of C++ and CUDA sources (comments stripped).

Finds: forbidden torch calls (`at::name(`, `torch::name(`, `at::_ops::name::call`, and the
method form `.name(` when `torch.Tensor.name` is forbidden); host threads and processes
(`std::thread`, `std::async`, `pthread_create`, `fork`, `system`, `popen`,
`posix_spawn`); and interposition on the CUDA runtime's timing and sync functions (a
definition of `cudaEventElapsedTime` and kin, `dlsym`, `RTLD_NEXT`).

Not covered: calls through macros or function pointers, and string literals that look
like calls (they are searched like code). OpenMP pragmas and CUDA streams are honest.
"""

from __future__ import annotations

import re

from solforge.bench.guards.findings import Guard, finding
from solforge.spec import GuardFinding

CPP_SUFFIXES = (".cu", ".cuh", ".cpp", ".cc", ".cxx", ".h", ".hpp")


_CPP_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_CPP_CONCURRENCY = re.compile(
    r"\bstd::(?:thread|jthread|async)\b|\bpthread_create\s*\(|\b(?:fork|vfork|system|popen|posix_spawnp?)\s*\("
)
# Defining a CUDA runtime timing or sync function (or looking one up) interposes on the harness's timer.
_CPP_TIMER = re.compile(
    r"\b(cuda(?:EventElapsedTime|EventRecord|EventSynchronize|EventQuery|DeviceSynchronize|StreamSynchronize)"
    r"|cuEventElapsedTime|cuCtxSynchronize)\s*\([^;{)]*\)\s*\{|\bdlsym\s*\(|\bRTLD_NEXT\b"
)


def cpp_findings(path: str, text: str, forbidden: list[str]) -> list[GuardFinding]:
    """Findings in one C++/CUDA source `text` (named `path` in messages, with 1-based
    line numbers of the original text): forbidden torch calls among `forbidden` (only
    names under `torch.`), host threads and processes, CUDA runtime interposition.
    Raises nothing."""
    code = _CPP_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)

    def line(pos: int) -> int:
        return code.count("\n", 0, pos) + 1

    out: list[GuardFinding] = []
    for f in forbidden:
        if not f.startswith("torch."):
            continue
        leaf = re.escape(f.rsplit(".", 1)[1])
        pattern = (rf"(?:\.|->)\s*{leaf}\s*\(" if f.startswith("torch.Tensor.")
                   else rf"\b(?:at|torch)(?:::\w+)*::{leaf}\s*(?:\(|::|<)")
        for m in re.finditer(pattern, code):
            out.append(finding(Guard.FORBIDDEN_CALL, f"forbidden call {f} at {path}:{line(m.start())}"))
    for m in _CPP_CONCURRENCY.finditer(code):
        out.append(finding(Guard.THREAD_OR_PROCESS,
                           f"threads or processes: {m.group(0).rstrip('( ')} at {path}:{line(m.start())}"))
    for m in _CPP_TIMER.finditer(code):
        what = m.group(1) or m.group(0).rstrip("( ")
        out.append(finding(Guard.TIMER_PATCH, f"timer patch: interposes {what} at {path}:{line(m.start())}"))
    return out
