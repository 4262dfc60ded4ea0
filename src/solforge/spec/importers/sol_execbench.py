"""What SOL-ExecBench datasets need beyond the FlashInfer Trace schema: an op_type for
definitions that name none, and entry points bound by position.

- **op_type.** SOL-ExecBench definitions often leave `op_type` out and are named
  `<org>_<model>_<op>` (`nvidia_Llama-3.3-Nemotron-70B-Select_rms_norm`), and their
  folders are named after a language (`examples/triton/rmsnorm/`). Neither the folder
  nor the name's first word (the model's vendor) is an op_type. `op_type_of` takes the
  definition's own `op_type` (or `type`), else a tag `op_type:<x>` (also `op:`,
  `category:`), else the first of `OP_WORDS` found in the name without its
  `<org>_<model>_` prefix, else that stem's first word that names no language, vendor
  or reference (`triton_ref_vecadd` is a `vecadd`).
- **Positional entry points.** SOL-ExecBench calls a Python entry point as
  `fn(*inputs, *outputs)` and lets its parameters be named freely
  (`rmsnorm_fwd(x, weight, output)` for inputs `hidden_states, weight`); solforge calls
  entry points with keyword arguments named as the definition's. `bind_positionally`
  keeps such a solution as it is and adds a generated entry point that takes the
  definition's names and passes them on by position, the mapping recorded in the report.
  A parameter named after a definition argument at another position is refused: the
  author and the position disagree about what it receives.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from solforge.spec.definition import Definition
from solforge.spec.solution import Solution

POSITIONAL_ENTRY_FILE = "solforge_positional_entry.py"

# (word in a definition's name, op_type), the most specific first: a name holding
# several (`attention_output_projection`) takes the first listed here.
OP_WORDS: tuple[tuple[str, str], ...] = (
    ("rope", "rope"), ("rotary", "rope"),
    ("rmsnorm", "rmsnorm"), ("rms_norm", "rmsnorm"), ("layernorm", "layernorm"), ("layer_norm", "layernorm"),
    ("groupnorm", "groupnorm"), ("group_norm", "groupnorm"), ("norm", "norm"),
    ("softmax", "softmax"),
    ("moe", "moe"), ("experts", "moe"), ("expert", "moe"), ("router", "moe"), ("routing", "moe"),
    ("gqa", "attention"), ("mha", "attention"), ("mla", "attention"), ("sdpa", "attention"),
    ("attention", "attention"), ("attn", "attention"),
    ("conv", "conv"), ("conv1d", "conv"), ("conv2d", "conv"), ("conv3d", "conv"), ("convolution", "conv"),
    ("embedding", "embedding"),
    ("swiglu", "activation"), ("geglu", "activation"), ("gelu", "activation"), ("silu", "activation"),
    ("relu", "activation"), ("activation", "activation"),
    ("sampling", "sampling"), ("top_k", "sampling"), ("topk", "sampling"), ("top_p", "sampling"),
    ("quant", "quantization"), ("quantize", "quantization"), ("dequant", "quantization"),
    ("dequantize", "quantization"), ("fp8", "quantization"), ("fp4", "quantization"),
    ("cross_entropy", "loss"), ("loss", "loss"),
    ("gemm", "gemm"), ("matmul", "gemm"), ("linear", "gemm"), ("projection", "gemm"), ("proj", "gemm"),
)
_TAG_KEYS = ("op_type", "op", "category")
# First words of a name that say how or by whom, not what: never an op_type.
_NOT_OPS = frozenset({
    "triton", "cuda", "cpp", "python", "pytorch", "torch", "cutlass", "cudnn", "cute", "dsl", "cutile", "tlx",
    "ref", "reference", "custom", "nvidia", "google", "meta", "microsoft", "openai", "qwen", "mistralai",
    "deepseek", "allenai", "ai21labs", "stabilityai", "ibm", "tiiuae",
})


def name_stem(name: str) -> str:
    """`name` without an `<org>_<model>_` prefix: a second word that holds `-` or `.`
    (`gemma-3-12b-it`, `FLUX.1-schnell`) marks the first two as a Hugging Face model id."""
    parts = name.split("_")
    if len(parts) >= 3 and re.search(r"[-.]", parts[1]):
        return "_".join(parts[2:])
    return name


def op_type_of(data: dict[str, Any]) -> tuple[str, str] | None:
    """(op_type, where it came from) for a definition's JSON (module docstring); None when
    the definition has no name to read it from."""
    for key in ("op_type", "type"):
        own = data.get(key)
        if isinstance(own, str) and own.strip():
            return own.strip(), f"the field '{key}'"
    for tag in data.get("tags") or []:
        key, _, value = str(tag).partition(":")
        if key.strip().lower() in _TAG_KEYS and value.strip():
            return value.strip(), f"the tag '{tag}'"
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    stem = name_stem(name).lower()
    words = stem.split("_")
    pairs = {f"{a}_{b}" for a, b in zip(words, words[1:])}
    for word, op_type in OP_WORDS:
        if word in words or word in pairs:
            return op_type, f"the word '{word}' in the name"
    word = next((w for w in words if w and w not in _NOT_OPS), words[0])
    return word, f"the word '{word}' of the name (no op word in it)"


def _signature(source: str, fn: str) -> ast.arguments | None:
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn:
            return node.args
    return None


class Refused(Exception):
    """The entry point cannot be bound; the message says why, in one line."""


def bind_positionally(definition: Definition, solution: Solution) -> tuple[Solution, str] | None:
    """`solution` with a generated entry point that passes the definition's arguments to
    its own entry point by position, and the note that records the mapping; None when the
    entry point already takes the definition's names in order (or is not Python, or its
    signature cannot be read statically). Raises Refused (module docstring)."""
    entry = solution.entry_source
    if entry is None or not entry.path.endswith(".py"):
        return None
    try:
        args = _signature(entry.content, solution.spec.entry_function)
    except SyntaxError:
        return None  # reported by the solution checks
    if args is None:
        return None
    expected = list(definition.inputs) + (list(definition.outputs) if solution.spec.destination_passing_style else [])
    params = [a.arg for a in (*args.posonlyargs, *args.args)]
    if params == expected and not args.posonlyargs and all(d is not None for d in args.kw_defaults):
        return None  # a keyword call and a positional one pass the same
    call = f"{solution.spec.entry_function}({', '.join(params)}{', *' + args.vararg.arg if args.vararg else ''})"
    required = len(params) - len(args.defaults)
    if len(expected) < required or (len(expected) > len(params) and args.vararg is None):
        raise Refused(f"spec.entry_point: {call} takes {required}"
                      f"{'' if required == len(params) else f' to {len(params)}'} positional arguments; "
                      f"the definition passes {len(expected)} ({', '.join(expected)})")
    if any(d is None for d in args.kw_defaults):
        missing = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
        raise Refused(f"spec.entry_point: {call} needs keyword-only {missing}, which a positional call never passes")
    for i, param in enumerate(params[: len(expected)]):
        if param in expected and expected.index(param) != i:
            raise Refused(f"spec.entry_point: {call} names '{param}' at position {i}, where the definition passes "
                          f"'{expected[i]}': by position, as SOL-ExecBench calls it, '{param}' would receive "
                          f"'{expected[i]}'")
    receivers = [*params, *(f"*{args.vararg.arg}[{k}]" for k in range(len(expected) - len(params)))] if args.vararg else params
    mapping = ", ".join(f"{receivers[i]} <- {name}" for i, name in enumerate(expected))
    module = PurePosixPath(entry.path).with_suffix("").as_posix().replace("/", ".")
    wrapper = _wrapper_source(module, solution.spec.entry_function, expected, solution.spec.entry_point)
    spec = solution.spec.model_copy(update={"entry_point": f"{POSITIONAL_ENTRY_FILE}::run"})
    bound = solution.model_copy(update={
        "spec": spec,
        "sources": [*solution.sources, type(entry)(path=POSITIONAL_ENTRY_FILE, content=wrapper)],
    })
    note = (f"spec.entry_point: {solution.spec.entry_point} is called by position, as SOL-ExecBench calls it "
            f"({mapping}); the entry point is now {POSITIONAL_ENTRY_FILE}::run, which passes them on")
    return bound, note


def _wrapper_source(module: str, fn: str, names: Sequence[str], original: str) -> str:
    if not module.isidentifier() and not all(part.isidentifier() for part in module.split(".")):
        raise Refused(f"spec.entry_point: the file of {original} is no importable module name")
    return (
        f'"""Generated by `solforge import flashinfer-trace`: calls {original} with the\n'
        "definition's arguments by position, as SOL-ExecBench does (its parameters have other\n"
        'names)."""\n\n'
        f"from {module} import {fn} as _entry\n\n\n"
        f"def run({', '.join(names)}):\n"
        f"    return _entry({', '.join(names)})\n"
    )


__all__ = ["OP_WORDS", "POSITIONAL_ENTRY_FILE", "Refused", "bind_positionally", "name_stem", "op_type_of"]
