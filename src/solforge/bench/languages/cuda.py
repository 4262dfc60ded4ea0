"""CUDA C++: solutions whose entry point is a host function in a `.cu` file.

The signature of the host function `fn` is parsed from the source, a C++ declaration is
generated from it, and the `.cu` sources are built and bound with
`torch.utils.cpp_extension.load_inline`; the call maps the keyword arguments onto the
signature's parameter order. On a machine whose torch has no CUDA the sources are only
compile-checked with `nvcc -c` (they cannot run). A `cuda` solution with a `.py` entry
point (a load_inline of its own) is imported like any Python solution. Cross-compiled
for a GPU target with nvcc (`bench.crosscompile`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solforge.bench.build import BuildError, Built, import_entry
from solforge.bench.languages import LanguagePlugin, register_language
from solforge.spec import Definition, Solution, Workload


@dataclass(frozen=True)
class CudaSignature:
    """A host function's signature as written in the source."""

    return_type: str
    params: list[tuple[str, str]]  # (type, name) in declaration order

    def declaration(self, name: str) -> str:
        return f"{self.return_type} {name}({', '.join(f'{t} {n}' for t, n in self.params)});"


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_QUALIFIERS = {"static", "inline", "__host__", "__forceinline__", "extern", '"C"'}


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside <>, () and []."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_cuda_signature(source: str, fn: str, file: str = "<source>") -> CudaSignature:
    """The signature of the top-level host function `fn` defined in CUDA C++ `source`.

    Comments are ignored; calls, declarations and definitions inside a namespace or
    class are skipped; `static`, `inline` and `__host__` are dropped from the return
    type; default arguments are dropped. Raises BuildError when there is no such
    definition, when `fn` is a `__global__` or `__device__` function or a template, or
    when a parameter has no name.
    """
    text = _COMMENTS.sub(" ", source)
    for match in re.finditer(rf"\b{re.escape(fn)}\s*\(", text):
        start, depth, i = match.end(), 1, match.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        after = text[i:].lstrip().removeprefix("noexcept").lstrip()
        if not after.startswith("{") or text[: match.start()].count("{") != text[: match.start()].count("}"):
            continue  # a call, a declaration, or a definition inside a namespace or class
        head = text[: match.start()]
        cut = max(head.rfind(";"), head.rfind("}"), head.rfind("{"), head.rfind("#"))
        if cut >= 0 and head[cut] == "#":
            cut = head.find("\n", cut)
        ret_words = head[cut + 1:].split()
        if any(w.startswith("template") for w in ret_words):
            raise BuildError(f"{file}: {fn} is a template; the entry point must be a plain host function")
        if "__global__" in ret_words or "__device__" in ret_words:
            raise BuildError(
                f"{file}: {fn} is a CUDA kernel; the entry point must be a host function taking torch::Tensor "
                "arguments that launches it"
            )
        return_type = " ".join(w for w in ret_words if w not in _QUALIFIERS)
        if not return_type:
            raise BuildError(f"{file}: cannot read the return type of {fn}")
        params: list[tuple[str, str]] = []
        raw = text[start: i - 1].strip()
        for p in [] if raw in ("", "void") else _split_top_level(raw):
            p = p.split("=")[0].strip()
            m = re.match(r"^(.*?[\s*&])([A-Za-z_]\w*)$", p)
            if not m or not m.group(1).strip():
                raise BuildError(f"{file}: parameter '{p}' of {fn} needs a type and a name")
            params.append((m.group(1).strip(), m.group(2)))
        return CudaSignature(return_type, params)
    raise BuildError(f"{file}: no top-level definition of host function '{fn}'")


def cxx_standard() -> str:
    """The C++ standard torch's headers need: C++20 from torch 2.12 on (torch's ATen
    headers refuse older standards there; pytorch/pytorch#176659), else C++17."""
    import torch

    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    return "c++20" if (major, minor) >= (2, 12) else "c++17"


def nvcc_compile_check(paths: list[Path], workdir: Path, timeout_s: float) -> str:
    """Compile each `.cu` file with `nvcc -c` against torch's and Python's headers, for a
    machine without a CUDA-enabled torch. Returns the log; a missing nvcc is a log line,
    not an error. Raises BuildError with nvcc's output when a file does not compile."""
    import sysconfig

    from torch.utils.cpp_extension import include_paths

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "nvcc not found on PATH: the CUDA C++ sources were not compile-checked"
    includes = [f"-I{p}" for p in [*include_paths(), sysconfig.get_paths()["include"], str(workdir)]]
    for path in paths:
        cmd = [nvcc, "-c", "-x", "cu", f"-std={cxx_standard()}", *includes, str(path),
               "-o", str(path.with_suffix(".o"))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=workdir)
        except subprocess.TimeoutExpired:
            raise BuildError(f"nvcc: {path.name} did not compile within {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error" in line]
            raise BuildError(f"nvcc: {path.name} does not compile:\n" + "\n".join(errors[:40] or [proc.stderr[-4000:]]))
    return f"nvcc: compile-checked {', '.join(p.name for p in paths)}"


class _CudaEntry:
    """Calls the bound host function with the keyword arguments in its parameter order."""

    def __init__(self, module: types.ModuleType, name: str, params: list[str]):
        self.module, self.name, self.params = module, name, params

    def __call__(self, **kwargs):
        out = getattr(self.module, self.name)(*[kwargs[p] for p in self.params])
        return tuple(out) if isinstance(out, list) else out


def _build_cuda(solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
    entry = solution.entry_source
    fn = solution.spec.entry_function
    assert entry is not None
    sig = parse_cuda_signature(entry.content, fn, entry.path)
    expected = list(definition.inputs) + (list(definition.outputs) if solution.spec.destination_passing_style else [])
    names = [n for _, n in sig.params]
    if sorted(names) != sorted(expected):
        raise BuildError(
            f"spec.entry_point: {fn}({', '.join(names)}) in {entry.path} does not match the definition's "
            f"arguments ({', '.join(expected)})"
        )
    cu = [s for s in solution.sources if s.path.endswith(".cu")]
    cu.sort(key=lambda s: s.path != entry.path)
    if device == "cpu":
        log = nvcc_compile_check([workdir / s.path for s in cu], workdir, timeout_s)
        return Built(fn=None, log=f"{log}\nbuilt; CUDA C++ cannot run on device cpu")
    import torch
    from torch.utils.cpp_extension import load_inline

    cpp = ["#include <torch/extension.h>\n" + sig.declaration(fn)]
    cpp += [s.content for s in solution.sources if s.path.endswith(".cpp")]
    cuda_flags = ["-O3"]
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if major >= 9 and "TORCH_CUDA_ARCH_LIST" not in os.environ:
        # The arch-specific target (sm_90a, sm_100a) enables wgmma / tcgen05; torch's
        # default target (sm_90) would reject those instructions.
        cuda_flags.append(f"-gencode=arch=compute_{major}{minor}a,code=sm_{major}{minor}a")
    digest = hashlib.sha256()
    for part in [*cpp, *(s.content for s in cu), fn, *cuda_flags, torch.__version__]:
        digest.update(part.encode())
    try:
        module = load_inline(
            name=f"solforge_{digest.hexdigest()[:16]}",
            cpp_sources=cpp,
            cuda_sources=[s.content for s in cu],
            functions=[fn],
            extra_cuda_cflags=cuda_flags,
            extra_include_paths=[str(workdir)],
            verbose=False,
        )
    except Exception as exc:  # load_inline raises RuntimeError / OSError with the compiler output
        raise BuildError(f"load_inline: {exc}") from None
    return Built(fn=_CudaEntry(module, fn, names), namespaces=[vars(module)], log="built with load_inline")


@register_language
class CudaLanguage(LanguagePlugin):
    name = "cuda"
    launches_own_kernels = True
    toolchain_modules = ("torch.utils.cpp_extension",)
    env_prefixes = ("CUDA_", "NVIDIA_", "NVCC_")
    prompt_notes = ("CUDA C++: the entry point is a host function in a .cu file taking torch::Tensor arguments "
                    "named as the definition's inputs; it launches the solution's own __global__ kernels.")

    def build(self, solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
        if solution.spec.entry_file.endswith(".py"):
            return import_entry(solution, workdir)
        return _build_cuda(solution, definition, workdir, device, timeout_s)

    def install_launch_hooks(self, device: str) -> None:
        pass  # the extension's functions are wrapped in its namespace (guards.launches)

    def cross_compile(self, solution: Solution, definition: Definition, workloads: list[Workload],
                      target: str) -> list[Any] | None:
        from solforge.bench.crosscompile import can_cross_compile, cross_compile

        if not can_cross_compile(solution):
            return None
        return cross_compile(solution, definition, workloads, target)

    def descriptors(self, sources: str) -> dict[str, int | str | bool]:
        return {"tensor_cores": bool(re.search(r"\b(wgmma|mma\.sync|wmma::|tcgen05)", sources))}
