"""Reading ptxas' verbose log (`ptxas -v`, or nvcc's `-Xptxas -v`): per-kernel resource
usage, warnings, and errors.

The log ptxas writes for each entry function (CUDA 12.x and 13.0; Triton's bundled
`ptxas` and `ptxas-blackwell` write the same, prefixed with their own name):

    ptxas info    : Compiling entry function '_rmsnorm_rows' for 'sm_90a'
    ptxas info    : Function properties for _rmsnorm_rows
        0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    ptxas info    : Used 26 registers, used 1 barriers, 16 bytes smem, 380 bytes cmem[0]

"Function properties" also appears for non-inlined device functions; only entry
functions (kernels) are reported. A `Potential Performance Loss` info line (e.g. wgmma
serialized on Hopper) is kept with the warnings: it is the one ptxas info line a kernel
author must act on.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

_PREFIX = r"^\s*ptxas(?:-blackwell)?\s+"
_ENTRY = re.compile(_PREFIX + r"info\s*:\s*Compiling entry function '([^']+)' for '([^']+)'")
_PROPERTIES = re.compile(_PREFIX + r"info\s*:\s*Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(_PREFIX + r"info\s*:\s*Used (\d+) registers")
_BARRIERS = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+) bytes smem")
_WARNING = re.compile(_PREFIX + r"warning\s*:\s*(.*)$")
_PERF_LOSS = re.compile(_PREFIX + r"info\s*:\s*(.*Potential Performance Loss.*)$")
# "ptxas error   : msg", "ptxas fatal   : msg", or "ptxas /tmp/k.ptx, line 135; error   : msg"
_ERROR = re.compile(_PREFIX + r"(?:\S+, line (\d+); )?(?:error|fatal)\s*:\s*(.*)$")


@dataclass
class KernelUsage:
    """What ptxas reports for one entry function. Memory in bytes."""

    name: str  # as in the PTX (mangled for CUDA C++)
    sass: str  # the target ptxas compiled for, e.g. "sm_90a"
    registers: int = 0
    barriers: int = 0
    static_shared_memory_bytes: int = 0
    stack_frame_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_ptxas_log(log: str) -> list[KernelUsage]:
    """Every entry function of a `ptxas -v` log, in the order compiled.

    Warnings before the first entry function (ptxas prints module-level ones there) are
    given to every kernel. Raises nothing: a log without entry functions gives [].
    """
    kernels: dict[str, KernelUsage] = {}
    frames: dict[str, tuple[int, int, int]] = {}
    module_warnings: list[str] = []
    current: KernelUsage | None = None
    properties_of: str | None = None
    for line in log.splitlines():
        if m := _ENTRY.match(line):
            current = kernels.setdefault(m.group(1), KernelUsage(m.group(1), m.group(2)))
            properties_of = None
        elif m := _PROPERTIES.match(line):
            properties_of = m.group(1)
        elif (m := _FRAME.search(line)) and properties_of is not None:
            frames[properties_of] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            properties_of = None
        elif (m := _USED.match(line)) and current is not None:
            current.registers = int(m.group(1))
            if b := _BARRIERS.search(line):
                current.barriers = int(b.group(1))
            if s := _SMEM.search(line):
                current.static_shared_memory_bytes = int(s.group(1))
        elif m := (_WARNING.match(line) or _PERF_LOSS.match(line)):
            (current.warnings if current is not None else module_warnings).append(m.group(1).strip())
    for kernel in kernels.values():
        kernel.stack_frame_bytes, kernel.spill_store_bytes, kernel.spill_load_bytes = frames.get(kernel.name, (0, 0, 0))
        kernel.warnings = [*module_warnings, *kernel.warnings]
    return list(kernels.values())


def ptxas_errors(log: str) -> list[str]:
    """ptxas' own error and fatal messages in a log, in order, each once (with the PTX line
    of its first occurrence: 'line 135: Not a name of any known instruction: 'bogus'')."""
    seen: dict[str, str] = {}
    for line in log.splitlines():
        if m := _ERROR.match(line):
            text = m.group(2).strip()
            seen.setdefault(text, f"line {m.group(1)}: {text}" if m.group(1) else text)
    return list(seen.values())


def demangle(names: list[str]) -> dict[str, str]:
    """C++ names demangled with `cu++filt` (shipped with nvcc) or `c++filt`; a name stays
    as it is when neither tool is on PATH or the tool fails."""
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if not names or tool is None:
        return {n: n for n in names}
    try:
        out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {n: n for n in names}
    lines = out.splitlines()
    return {n: (lines[i].strip() or n) if i < len(lines) else n for i, n in enumerate(names)}
