"""Winners as a local Hugging Face `kernels` package, loadable without solforge.

Layout (the `kernels` library's build layout; a pure-Python or Triton kernel is a
"noarch" build variant, `build/torch-<backend>`):

    DIR/
      README.md                     what is inside, where it came from, how to load it
      build/torch-cpu/              numba winners (torch-cuda for Triton, torch-universal for PyTorch)
        metadata.json               name, id, version, license, python-depends, backend
        __init__.py                 `from . import layers`
        layers.py                   layer classes with `forward` only (stateless, as `kernels` requires)
        _kernels.py                 the winners' table, custom ops, per-shape dispatch
        sol_<digest>/...            each winner's source files

Layers (the names a mapping refers to, e.g. `{"RMSNorm": "DIR:RMSNorm"}`):

- `RMSNorm`: replaces a Llama-style RMSNorm (`self.weight`, `self.variance_epsilon`);
- `SiluAndMul`: `x (..., 2I) -> silu(x[..., :I]) * x[..., I:]`, as kernels-community's.

Each forward calls a `torch.library` custom op (with a fake implementation, so the layers
declare `can_torch_compile = True`) when a winner matches the call's sizes, eps, dtype,
device and tuned shapes, and computes the same result in plain PyTorch otherwise.
Winners of other families are listed in the README as not exported.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from solforge.runtime.dispatch import DEFAULT_MARGIN
from solforge.runtime.winners import Winner, load_winners
from solforge.search.archive_schema import source_hash
from solforge.spec import Language, SpecError

PACKAGE_NAME = "solforge-kernels"
_FAMILIES = {"rmsnorm_h*": "rmsnorm", "silu_and_mul_i*": "silu_and_mul"}


def _family(w: Winner) -> str | None:
    import fnmatch

    for pattern, fam in _FAMILIES.items():
        if fnmatch.fnmatchcase(w.definition.name, pattern):
            return fam
    return None


def _variant(winners: list[Winner]) -> str:
    langs = {w.solution.spec.language for w in winners}
    if langs <= {Language.numba}:
        return "cpu"
    if langs <= {Language.triton, Language.cuda}:
        return "cuda"
    if langs <= {Language.pytorch, Language.python}:
        return "universal"
    raise SpecError(f"winners mix languages {sorted(lang.value for lang in langs)}: export them to separate folders "
                    "(one build variant per package: numba -> torch-cpu, triton -> torch-cuda)")


def export_hf_kernels(winners: list, out: str | Path, datasets: list[str | Path] = (),
                      margin: float = DEFAULT_MARGIN) -> dict[str, object]:
    """Write `winners` as a `kernels` package under `out` (module docstring).

    Returns {"path": out, "variant": "torch-cpu" | ..., "layers": [...], "skipped": [(name, why)]}.
    Raises SpecError (one line) when no winner has a layer family, or the winners need two
    build variants. The package is built in a temporary folder and moved into place, so
    `out` is never left half-written; an existing `out` is replaced.
    """
    loaded = load_winners(list(winners), datasets)
    exported, skipped = [], []
    for w in loaded:
        fam = _family(w)
        if fam is None:
            skipped.append((w.name, f"definition '{w.definition.name}' has no `kernels` layer family "
                                    "(exported: rmsnorm_h*, silu_and_mul_i*)"))
        else:
            exported.append((w, fam))
    if not exported:
        raise SpecError(f"export: none of the {len(loaded)} winner(s) has a `kernels` layer family "
                        f"({skipped[0][1] if skipped else 'no winners'})")
    backend = _variant([w for w, _ in exported])
    variant = f"torch-{backend}"
    table = []
    digest_all = hashlib.sha256()
    files: dict[str, str] = {}
    for w, fam in exported:
        digest = source_hash(w.solution)[:8]  # the one source hash: what runs
        digest_all.update(digest.encode())
        folder = f"sol_{digest}"
        for s in w.solution.sources:
            files[f"{folder}/{s.path}"] = s.content
        axes = w.definition.axes
        from solforge.knowledge import reference_constants

        table.append({
            "definition": w.definition.name, "solution": w.solution.name, "family": fam, "folder": folder,
            "entry_file": w.solution.spec.entry_file, "entry_function": w.solution.spec.entry_function,
            "dps": w.solution.spec.destination_passing_style, "device": w.device,
            "dtype": sorted(w.dtypes)[0] if w.dtypes else None,
            "width": axes["hidden_size"].value if fam == "rmsnorm" else axes["intermediate_size"].value,
            "eps": reference_constants(w.definition.reference).get("eps"),
            "tokens": sorted({b["num_tokens"] for b in w.buckets if "num_tokens" in b}),
            "inputs": list(w.definition.inputs), "outputs": list(w.definition.outputs),
        })
    ident = f"_solforge_kernels_{backend}_{digest_all.hexdigest()[:7]}"
    files["metadata.json"] = json.dumps({
        "name": PACKAGE_NAME, "id": ident, "version": 1, "license": "apache-2.0", "python-depends": [],
        "backend": {"type": "cuda" if backend == "cuda" else backend},
    }, indent=2) + "\n"
    if backend == "universal":
        meta = json.loads(files["metadata.json"])
        meta.pop("backend")
        files["metadata.json"] = json.dumps(meta, indent=2) + "\n"
    files["__init__.py"] = '"""solforge winners as kernels layers; see layers.py."""\n\nfrom . import layers\n\n' \
                           '__all__ = ["layers"]\n'
    files["_kernels.py"] = _KERNELS_PY.replace("@TABLE@", repr(table)).replace(
        "@NAMESPACE@", ident).replace("@MARGIN@", repr(float(margin)))
    files["layers.py"] = _LAYERS_PY
    layers = sorted({"RMSNorm" if fam == "rmsnorm" else "SiluAndMul" for _, fam in exported})
    readme = _readme(table, skipped, variant, layers)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        for rel, text in files.items():
            p = staging / "build" / variant / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        (staging / "README.md").write_text(readme)
        if out.exists():
            old = out.with_name(f".{out.name}-old-{os.getpid()}")
            os.replace(out, old)
            os.replace(staging, out)
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"path": out, "variant": variant, "layers": layers, "skipped": skipped}


def _readme(table: list[dict], skipped: list[tuple[str, str]], variant: str, layers: list[str]) -> str:
    rows = "\n".join(f"| {t['definition']} | {t['solution']} | {t['family']} | {t['dtype']} | {t['tokens']} |"
                     for t in table)
    skipped_text = "\n".join(f"- {name}: {why}" for name, why in skipped) or "- none"
    return f"""# {PACKAGE_NAME}

Kernels found by solforge, as a Hugging Face `kernels` package (build variant `{variant}`).
Layers: {', '.join(layers)}. Loading it needs torch and the kernels' own languages
(numba for a torch-cpu build, triton for torch-cuda), not solforge.

| definition | solution | family | dtype | tuned num_tokens |
| --- | --- | --- | --- | --- |
{rows}

Not exported:
{skipped_text}

With `kernels`:

```python
from pathlib import Path
from kernels import LocalLayerRepository, Mode, kernelize, use_kernel_mapping
mapping = {{"RMSNorm": {{"{variant.split('-')[1] if variant != 'torch-universal' else 'cpu'}": LocalLayerRepository(repo_path=Path("THIS_DIR"), layer_name="RMSNorm")}}}}
with use_kernel_mapping(mapping, inherit_mapping=False):
    model = kernelize(model, mode=Mode.INFERENCE)
```

With transformers: `KernelConfig(kernel_mapping={{"RMSNorm": "THIS_DIR:RMSNorm"}}, use_local_kernel=True)`.

Outside the tuned shapes (x{DEFAULT_MARGIN:g}), or for another dtype, eps or device, a layer computes
the same result in plain PyTorch.
"""


_KERNELS_PY = r'''"""The winners' table, their custom ops, and the per-shape choice (written by solforge export)."""

import importlib.util
import math
import os
import sys
import warnings

import torch

KERNELS = @TABLE@
NAMESPACE = "@NAMESPACE@"
MARGIN = @MARGIN@
_HERE = os.path.dirname(os.path.abspath(__file__))
_ops = {}
_warned = set()


def _entry(k):
    folder = os.path.join(_HERE, k["folder"])
    name = NAMESPACE + "_" + k["folder"]
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, k["entry_file"]))
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(folder)
        sys.modules[name] = module
    return getattr(module, k["entry_function"])


def _op(k):
    key = k["folder"]
    if key in _ops:
        return _ops[key]
    entry = _entry(k)
    width = k["width"]
    dtype = getattr(torch, k["dtype"])
    names = k["inputs"]

    def out_shape(first):
        return (first.shape[0], width)

    def real(*args):
        kwargs = {n: a.contiguous() for n, a in zip(names, args)}
        out = torch.empty(out_shape(args[0]), dtype=dtype, device=args[0].device)
        if k["dps"]:
            entry(**kwargs, **{k["outputs"][0]: out})
            return out
        return entry(**kwargs).clone()

    def fake(*args):
        return torch.empty(out_shape(args[0]), dtype=dtype, device=args[0].device)

    schema = "(" + ", ".join("Tensor " + n for n in names) + ") -> Tensor"
    op_name = k["definition"].replace("-", "_") + "_" + k["folder"]
    lib_op = torch.library.custom_op(NAMESPACE + "::" + op_name, real, mutates_args=(), schema=schema)
    lib_op.register_fake(fake)
    _ops[key] = getattr(getattr(torch.ops, NAMESPACE), op_name).default
    return _ops[key]


def _warn(reason):
    if reason not in _warned and not torch.compiler.is_compiling():
        _warned.add(reason)
        warnings.warn("solforge-kernels: " + reason + "; using plain PyTorch", stacklevel=3)


def pick(family, width, eps, dtype, device_type, tokens):
    """The op of the winner nearest the call, or None (then the caller computes in plain PyTorch)."""
    best, best_d = None, math.inf
    for k in KERNELS:
        if k["family"] != family or k["width"] != width:
            continue
        if k["dtype"] != str(dtype).replace("torch.", ""):
            continue
        if k["device"] not in ("any", device_type):
            continue
        if eps is not None and k["eps"] is not None and abs(k["eps"] - eps) > 1e-12 * max(1.0, abs(eps)):
            continue
        tuned = k["tokens"]
        if tuned and not (min(tuned) / MARGIN <= tokens <= max(tuned) * MARGIN):
            continue
        d = min((abs(math.log2(max(tokens, 1) / max(t, 1))) for t in tuned), default=0.0)
        if d < best_d:
            best, best_d = k, d
    if best is None:
        _warn(f"no kernel for {family} width={width} eps={eps} dtype={dtype} device={device_type} tokens={tokens}")
        return None
    return _op(best)


def rmsnorm(hidden_states, weight, eps):
    width = hidden_states.shape[-1]
    x = hidden_states.reshape(-1, width)
    op = pick("rmsnorm", width, eps, x.dtype, x.device.type, x.shape[0]) if weight.dtype == x.dtype else None
    if op is not None:
        return op(x, weight).reshape(hidden_states.shape)
    dtype = hidden_states.dtype
    h = hidden_states.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def silu_and_mul(x):
    d = x.shape[-1] // 2
    flat = x.reshape(-1, 2 * d)
    op = pick("silu_and_mul", d, None, flat.dtype, flat.device.type, flat.shape[0])
    if op is not None:
        return op(flat).reshape(*x.shape[:-1], d)
    return torch.nn.functional.silu(x[..., :d]) * x[..., d:]
'''

_LAYERS_PY = r'''"""Layers for `kernels` (stateless: `forward` only, as kernels.kernelize requires)."""

import torch

from . import _kernels


class RMSNorm(torch.nn.Module):
    """Llama-style RMSNorm: uses the replaced module's `weight` and `variance_epsilon`."""

    can_torch_compile = True
    has_backward = False

    def forward(self, hidden_states):
        eps = getattr(self, "variance_epsilon", None)
        if eps is None:
            eps = getattr(self, "eps", 1e-6)
        return _kernels.rmsnorm(hidden_states, self.weight, float(eps))


class SiluAndMul(torch.nn.Module):
    """silu(x[..., :d]) * x[..., d:] with d = x.shape[-1] // 2."""

    can_torch_compile = True
    has_backward = False

    def forward(self, x):
        return _kernels.silu_and_mul(x)
'''
