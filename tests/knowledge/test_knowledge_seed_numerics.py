"""Every seed kernel computes the reference of every definition it claims, within the
definition's tolerance, on the CPU-sized smoke workloads: at several points of its
parameter space on its first definition, at its defaults on the others.

Each case builds the seed's Solution (`to_solution`), imports its source from a file,
poisons the outputs with NaN, calls `run` in destination-passing style on random
inputs (the harness's generators and value distributions), checks that the inputs are
untouched, and compares every output with the reference (the definition's `run`,
computed in float64) by the rule of `Definition.tolerance_for`.

numba seeds run in this process. Triton seeds run under the Triton interpreter, which
reads TRITON_INTERPRET=1 when triton is first imported, and another test may already
have imported triton here: so they run in one subprocess that executes this file as a
script (`--triton-worker`) and prints one JSON line per case. The interpreter
multiplies the raw bits of bfloat16 `tl.dot` operands (triton-lang/triton#11584: bf16
dot "not supported yet" in the interpreter); the worker converts them to float32
first, as the interpreter's own casts do, so the GEMM seeds' tiling, masks, swizzles
and split-K reduction are checked here and their tensor-core path on a GPU.

LAYERNORM and CROSS_ENTROPY below check the layernorm and cross-entropy seeds against
torch's own layer_norm and cross_entropy as well, on the natural signatures the seeds
were written for, whichever built-in definitions exist.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from solforge.bench.inputs import make_inputs
from solforge.knowledge import SeedKernel, load_seeds, params_digest
from solforge.problems import builtin_names, load_builtin, select_workloads
from solforge.spec import Definition, Workload

LAYERNORM = {
    "name": "layernorm_h4096_torch",
    "op_type": "layernorm",
    "axes": {"num_tokens": {"type": "var"}, "hidden_size": {"type": "const", "value": 4096}},
    "inputs": {
        "hidden_states": {"shape": ["num_tokens", "hidden_size"], "dtype": "bfloat16"},
        "weight": {"shape": ["hidden_size"], "dtype": "bfloat16"},
        "bias": {"shape": ["hidden_size"], "dtype": "bfloat16"},
    },
    "outputs": {"output": {"shape": ["num_tokens", "hidden_size"], "dtype": "bfloat16"}},
    "reference": (
        "import torch\n\n\ndef run(hidden_states, weight, bias):\n"
        "    eps = 1e-5\n"
        "    acc = torch.promote_types(hidden_states.dtype, torch.float32)\n"
        "    y = torch.nn.functional.layer_norm(\n"
        "        hidden_states.to(acc), hidden_states.shape[-1:], weight.to(acc), bias.to(acc), eps=eps\n"
        "    )\n"
        "    return y.to(hidden_states.dtype)\n"
    ),
}
CROSS_ENTROPY = {
    "name": "cross_entropy_v128256_torch",
    "op_type": "cross_entropy",
    "axes": {"num_tokens": {"type": "var"}, "vocab_size": {"type": "const", "value": 128256}},
    "inputs": {
        "logits": {"shape": ["num_tokens", "vocab_size"], "dtype": "bfloat16"},
        "labels": {"shape": ["num_tokens"], "dtype": "int64"},
    },
    "outputs": {"loss": {"shape": ["num_tokens"], "dtype": "float32"}},
    "reference": (
        "import torch\n\nIGNORE_INDEX = -100\n\n\ndef run(logits, labels):\n"
        "    acc = torch.promote_types(logits.dtype, torch.float32)\n"
        "    return torch.nn.functional.cross_entropy(\n"
        "        logits.to(acc), labels, ignore_index=IGNORE_INDEX, reduction='none'\n"
        "    )\n"
    ),
    "solforge": {"input_generators": {"labels": {"generator": "randint", "args": {"low": 0, "high": "vocab_size"}}}},
}
EXTRA_SMOKE_TOKENS = {"layernorm_h4096_torch": (1, 7, 64), "cross_entropy_v128256_torch": (1, 3, 8)}
IGNORE_INDEX = -100  # torch's cross_entropy default; the first row of a multi-row batch gets it

DISTRIBUTIONS = ("normal", "large", "mixed", "tiny")
# Points beyond the defaults and each parameter's first and last values: the paths those miss.
EXTRA_POINTS = {
    "triton/gemm_split_k": [{"SPLIT_K": 4, "BLOCK_K": 32}, {"SPLIT_K": 16, "BLOCK_K": 32, "BLOCK_M": 16}],
    "triton/softmax_split_row": [{"SPLITS": 128, "BLOCK_SIZE": 256}],  # more slices than the row fills
    "numba/softmax_split_row": [{"BLOCK_COLS": 8192, "PARALLEL": True}],
    "numba/cross_entropy_blocks": [{"BLOCK_COLS": 8192, "PARALLEL": True}],
    "numba/rmsnorm_rows": [{"ACCUMULATORS": 8, "FASTMATH": False, "PARALLEL": True, "ROWS_PER_CHUNK": 2}],
}
# Smoke workloads per case: the interpreter is slow, numba is not.
WORKLOADS_AT_DEFAULTS = {"triton": 2, "numba": 3}
WORKER_TIMEOUT_S = 600


@dataclass(frozen=True)
class Case:
    seed: str  # SeedKernel.name
    definition: str
    params: dict
    workloads: tuple[int, ...]  # indices into the definition's smoke workloads
    seed_value: int  # base seed of the inputs

    @property
    def id(self) -> str:
        return f"{self.seed}@{self.definition}#{params_digest(self.params)}"


@functools.cache
def definitions() -> dict[str, tuple[Definition, list[Workload]]]:
    """Definition name -> (definition, smoke workloads): the built-ins and the two above."""
    out = {}
    for name in builtin_names():
        definition, workloads = load_builtin(name)
        out[name] = (definition, select_workloads(workloads, "smoke"))
    for data in (LAYERNORM, CROSS_ENTROPY):
        definition = Definition.model_validate(data)
        tokens = EXTRA_SMOKE_TOKENS[definition.name]
        smoke = [Workload(uuid=f"{definition.name}-t{t}", axes={"num_tokens": t}) for t in tokens]
        out[definition.name] = (definition, smoke)
    return out


def param_points(seed: SeedKernel) -> list[dict]:
    points = [dict(seed.params)]
    points.append({k: v[0] for k, v in seed.param_space.items()})
    points.append({k: v[-1] for k, v in seed.param_space.items()})
    points += [{**seed.params, **extra} for extra in EXTRA_POINTS.get(seed.name, [])]
    unique = {json.dumps(p, sort_keys=True): p for p in points}
    return list(unique.values())


def cases(language: str) -> list[Case]:
    """Every parameter point on the seed's first definition (by name), its defaults on the others."""
    defs = definitions()
    out = []
    for seed in load_seeds(language):
        claimed = [name for name in sorted(defs) if seed.applies_to(defs[name][0])]
        for d, name in enumerate(claimed):
            n = len(defs[name][1])
            if d > 0:
                out.append(Case(seed.name, name, dict(seed.params), (1 % n,), seed_value=101 * d))
                continue
            for i, params in enumerate(param_points(seed)):
                chosen = range(min(n, WORKLOADS_AT_DEFAULTS[language])) if i == 0 else (i % n,)
                out.append(Case(seed.name, name, params, tuple(chosen), seed_value=17 * i))
    return out


def run_case(case: Case, directory: Path) -> list[str]:
    """Every way the case's seed misses the reference, as one line each; empty when it matches."""
    seed = next(s for s in load_seeds() if s.name == case.seed)
    definition, workloads = definitions()[case.definition]
    module = _import(seed.to_solution(definition, case.params).entry_source.content, directory, seed.stem)
    namespace: dict = {}
    exec(compile(definition.reference, f"<reference {definition.name}>", "exec"), namespace)
    failures = []
    for k, index in enumerate(case.workloads):
        workload = workloads[index]
        distribution = DISTRIBUTIONS[(case.seed_value + k) % len(DISTRIBUTIONS)]
        where = f"{case.id} {workload.label} ({distribution})"
        found = _check(module.run, namespace["run"], definition, workload, distribution, case.seed_value + k)
        failures += [f"{where}: {f}" for f in found]
    return failures


_MODULES: dict[str, object] = {}  # by source: numba compiles each distinct source once


def _import(source: str, directory: Path, stem: str):
    key = hashlib.sha256(source.encode()).hexdigest()[:12]
    if key not in _MODULES:
        path = directory / f"{stem}_{key}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"seed_{stem}_{key}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MODULES[key] = module
    return _MODULES[key]


def _check(run, reference, definition: Definition, workload: Workload, distribution: str, seed: int) -> list[str]:
    axes = definition.resolve_axes(workload.axes)
    inputs = make_inputs(definition, workload, axes, seed, distribution, "cpu", None)
    if "labels" in inputs and inputs["labels"].numel() > 1:
        inputs["labels"][0] = IGNORE_INDEX
    originals = {k: v.clone() for k, v in inputs.items()}
    outputs = {}
    for name, spec in definition.outputs.items():
        dtype = spec.dtype.to_torch()
        fill = float("nan") if dtype.is_floating_point else -1
        outputs[name] = torch.full(definition.shape_of(spec, axes), fill, dtype=dtype)
    returned = run(**inputs, **outputs)
    failures = [] if returned is None else [f"run returned {type(returned).__name__}, expected None"]
    failures += [f"input '{k}' was modified" for k, v in inputs.items() if not torch.equal(v, originals[k])]
    upcast = {k: v.double() if v.is_floating_point() else v for k, v in originals.items()}
    expected = reference(**upcast)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for (name, spec), ref in zip(definition.outputs.items(), expected):
        out = outputs[name]
        if out.dtype != spec.dtype.to_torch() or tuple(out.shape) != tuple(ref.shape):
            failures.append(f"{name}: {out.dtype} {tuple(out.shape)}, expected {spec.dtype.value} {tuple(ref.shape)}")
            continue
        tol = definition.tolerance_for(spec.dtype)
        got, want = out.double(), ref.double()
        err = (got - want).abs()
        close = (err <= tol.atol + tol.rtol * want.abs()) | (got.isnan() & want.isnan())
        matched = close.double().mean().item()
        if matched < tol.required_matched_ratio:
            worst = err.nan_to_num(nan=math.inf).max().item()
            failures.append(
                f"{name}: {matched:.4%} of elements within atol {tol.atol} + rtol {tol.rtol} "
                f"(needs {tol.required_matched_ratio:.2%}), max |err| {worst:.3g}"
            )
    return failures


# -- numba, in this process ------------------------------------------------------------

@pytest.mark.parametrize("numba_seed", sorted(s.name for s in load_seeds("numba")))
def test_numba_seed_matches_the_reference(numba_seed, tmp_path):
    pytest.importorskip("numba")
    mine = [c for c in cases("numba") if c.seed == numba_seed]
    assert len(mine) >= 3
    failures = [f for case in mine for f in run_case(case, tmp_path)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("numba_seed", sorted(s.name for s in load_seeds("numba")))
def test_numba_bf16_bit_conversions_are_exact(numba_seed, tmp_path):
    # the output tolerance cannot tell round-to-nearest-even from truncation (both within
    # 2^-8); torch's float32 -> bfloat16 cast rounds to nearest even, so match it bit for bit
    np = pytest.importorskip("numpy")
    pytest.importorskip("numba")
    seed = next(s for s in load_seeds("numba") if s.name == numba_seed)
    module = _import(seed.with_params(), tmp_path, seed.stem)

    every_bf16 = np.arange(1 << 16, dtype=np.uint16)
    widened = np.empty(1 << 16, np.uint32)
    module._bf16_to_f32(every_bf16, widened)
    exact = torch.from_numpy(every_bf16.view(np.int16).copy()).view(torch.bfloat16).float()
    assert np.array_equal(widened, exact.numpy().view(np.uint32))

    gen = torch.Generator().manual_seed(0)
    high = torch.randint(0, 1 << 16, (4096,), generator=gen, dtype=torch.int64)
    ties = ((high << 16) | 0x8000).to(torch.int64)  # exactly halfway between two bfloat16 values
    randoms = torch.randint(0, 1 << 32, (1 << 16,), generator=gen, dtype=torch.int64)
    specials = torch.tensor([0.0, -0.0, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-40, 1.0, -2.5]).view(torch.int32)
    bits = torch.cat([ties, randoms, specials.to(torch.int64) & 0xFFFFFFFF]).to(torch.uint32).numpy()
    narrowed = np.empty(bits.shape, np.uint16)
    module._f32_to_bf16(bits, narrowed)
    values = torch.from_numpy(bits.view(np.float32).copy())
    want = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = values.isnan().numpy()
    assert np.array_equal(narrowed[~nan], want[~nan])
    assert torch.from_numpy(narrowed[nan].view(np.int16).copy()).view(torch.bfloat16).isnan().all()


# -- Triton, under the interpreter in a subprocess ----------------------------------------


@pytest.fixture(scope="module")
def interpreter_results():
    """(case id -> failures, exit status, stderr tail) of one worker subprocess over every Triton case."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--triton-worker"], capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[record["case"]] = record["failures"]
    return results, proc.returncode, proc.stderr[-4000:]


@pytest.mark.parametrize("triton_seed", sorted(s.name for s in load_seeds("triton")))
def test_triton_seed_matches_the_reference_under_the_interpreter(triton_seed, interpreter_results):
    results, returncode, stderr = interpreter_results
    mine = [c for c in cases("triton") if c.seed == triton_seed]
    assert len(mine) >= 3
    missing = [c.id for c in mine if c.id not in results]
    assert not missing, f"worker exited {returncode} before {missing}:\n{stderr}"
    failures = [f for c in mine for f in results[c.id]]
    assert not failures, "\n".join(failures)


def _patch_interpreter_bf16_dot() -> None:
    """Make the interpreter's tl.dot convert bfloat16 operands (stored as uint16) to float32."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        def widen(h):
            if h.dtype.scalar.is_bf16():
                return interpreter.TensorHandle((h.data.astype(np.uint32) << 16).view(np.float32), tl.float32)
            return h

        return original(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    interpreter.InterpreterBuilder.create_dot = create_dot


def _triton_worker() -> int:
    assert os.environ.get("TRITON_INTERPRET") == "1", "the worker runs under the Triton interpreter only"
    _patch_interpreter_bf16_dot()
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases("triton"):
            try:
                failures = run_case(case, Path(tmp))
            except Exception as exc:  # a crash is this case's failure, not the end of the run
                failures = [f"{case.id}: raised {type(exc).__name__}: {exc}".splitlines()[0]]
            print(json.dumps({"case": case.id, "failures": failures}), flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--triton-worker"]:
    sys.exit(_triton_worker())
