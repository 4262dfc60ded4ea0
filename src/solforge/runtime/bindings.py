"""Where a definition's kernel goes in a model: one binding per op family.

A binding finds the modules of a model that compute its family (by structure, as
transformers builds Llama-family models), checks each against the definition (sizes,
constants such as eps, dtype), and gives the module a new `forward` that calls the
kernel through its dispatcher, or the original forward when the dispatcher says no.

| family (definition names) | modules | what the new forward does |
| --- | --- | --- |
| `rmsnorm_h*` | `*RMSNorm` (Llama-style `x * rsqrt(mean(x^2) + eps) * weight`) | the kernel on (T, H) |
| `fused_add_rmsnorm_h*` | decoder layers with input_layernorm, self_attn, post_attention_layernorm and a dense mlp | attention, then the kernel does the residual add and post_attention_layernorm at once, then the mlp and the last add |
| `silu_and_mul_i*` | MLPs with gate_proj, up_proj, down_proj and a SiLU act_fn | one GEMM over [gate; up] (the two weights made views of one concatenated weight), the kernel, down_proj |
| `gemm_*` (A, B -> C) | bias-free `nn.Linear` | the kernel on (M, K) x (N, K)^T |

Rotary, attention and embedding definitions have no binding: transformers computes the
rotary tables per forward and owns the attention call; `solforge.apply` serves one's own
function instead.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from solforge.runtime.dispatch import Dispatcher
from solforge.spec import Definition


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _reference_eps(defn: Definition) -> float | None:
    from solforge.knowledge import reference_constants

    value = reference_constants(defn.reference).get("eps")
    return float(value) if value is not None else None


def _norm_mismatch(norm, defn: Definition) -> str | None:
    hidden = defn.axes["hidden_size"].value if "hidden_size" in defn.axes else None
    if norm.weight.shape[0] != hidden:
        return f"hidden size {norm.weight.shape[0]}, the definition's is {hidden}"
    eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", float("nan"))))
    ref = _reference_eps(defn)
    if ref is not None and abs(eps - ref) > 1e-12 * max(1.0, abs(ref)):
        return f"eps {eps:g}, the definition's reference uses {ref:g}"
    return None


def _is_llama_norm(m) -> bool:
    name = type(m).__name__
    return name.endswith("RMSNorm") and "gemma" not in name.lower() and getattr(m, "weight", None) is not None \
        and m.weight.dim() == 1


@dataclass
class Binding:
    """One op family's place in a model; see the module docstring."""

    family: str  # fnmatch pattern of definition names
    find: Callable[[Any], list[tuple[str, Any]]]  # model -> [(qualname, module)]
    mismatch: Callable[[Any, Definition], str | None]  # module, definition -> why it does not fit, or None
    weight_of: Callable[[Any], Any]  # module -> the tensor whose dtype the definition must have
    make_forward: Callable[[Any, Dispatcher, Callable], Callable]  # module, dispatcher, original -> forward
    prepare: Callable[[Any], None] | None = None  # once, before the first forward (e.g. fuse weights)


def _rmsnorm_forward(module, dispatcher: Dispatcher, original: Callable) -> Callable:
    def forward(hidden_states):
        hidden = module.weight.shape[0]
        x = hidden_states.reshape(-1, hidden)  # (T, H)
        op = dispatcher.select({"num_tokens": x.shape[0]}, _dtype_name(x.dtype), x.device.type)
        if op is None:
            return original(hidden_states)
        return op(x, module.weight).reshape(hidden_states.shape)

    return forward


def _decoder_layers(model) -> list[tuple[str, Any]]:
    out = []
    for name, m in model.named_modules():
        mlp = getattr(m, "mlp", None)
        if all(hasattr(m, c) for c in ("input_layernorm", "self_attn", "post_attention_layernorm")) and mlp is not None \
                and all(hasattr(mlp, c) for c in ("gate_proj", "up_proj", "down_proj")) \
                and _is_llama_norm(m.post_attention_layernorm):
            out.append((name, m))
    return out


def _fused_add_forward(layer, dispatcher: Dispatcher, original: Callable) -> Callable:
    signature = inspect.signature(original)

    def forward(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        hidden_states = arguments.pop("hidden_states")
        extra = {}
        for name, param in signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                extra = arguments.pop(name, {})
        norm = layer.post_attention_layernorm
        hidden = norm.weight.shape[0]
        op = dispatcher.select({"num_tokens": hidden_states.numel() // hidden}, _dtype_name(hidden_states.dtype),
                               hidden_states.device.type)
        if op is None:
            return original(*args, **kwargs)
        residual = hidden_states
        h = layer.input_layernorm(hidden_states)
        h = layer.self_attn(hidden_states=h, **arguments, **extra)
        h = h[0] if isinstance(h, tuple) else h
        out, residual = op(h.reshape(-1, hidden), residual.reshape(-1, hidden), norm.weight)
        out, residual = out.reshape(h.shape), residual.reshape(h.shape)
        return residual + layer.mlp(out)

    return forward


def _mlps(model) -> list[tuple[str, Any]]:
    import torch

    out = []
    for name, m in model.named_modules():
        if all(isinstance(getattr(m, c, None), torch.nn.Linear) for c in ("gate_proj", "up_proj", "down_proj")) \
                and "silu" in type(getattr(m, "act_fn", None)).__name__.lower() \
                and m.gate_proj.bias is None and m.up_proj.bias is None:
            out.append((name, m))
    return out


def _mlp_mismatch(mlp, defn: Definition) -> str | None:
    inter = defn.axes["intermediate_size"].value if "intermediate_size" in defn.axes else None
    if mlp.gate_proj.out_features != inter:
        return f"intermediate size {mlp.gate_proj.out_features}, the definition's is {inter}"
    return None


def _fuse_gate_up(mlp) -> None:
    """One (2I, H) weight holding [gate; up]; gate_proj and up_proj keep their Parameters, now views of it."""
    import torch

    if getattr(mlp, "_solforge_gate_up", None) is not None:
        return
    inter = mlp.gate_proj.out_features
    with torch.no_grad():
        fused = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], dim=0)  # (2I, H)
        mlp.gate_proj.weight.data = fused[:inter]
        mlp.up_proj.weight.data = fused[inter:]
    mlp.register_buffer("_solforge_gate_up", fused, persistent=False)


def _silu_and_mul_forward(mlp, dispatcher: Dispatcher, original: Callable) -> Callable:
    import torch.nn.functional as F

    def forward(x):
        inter = mlp.gate_proj.out_features
        tokens = x.numel() // x.shape[-1]
        op = dispatcher.select({"num_tokens": tokens}, _dtype_name(x.dtype), x.device.type)
        if op is None:
            return original(x)
        gate_up = F.linear(x, mlp._solforge_gate_up).reshape(-1, 2 * inter)  # (T, 2I)
        return mlp.down_proj(op(gate_up).reshape(*x.shape[:-1], inter))

    return forward


def _linears(model) -> list[tuple[str, Any]]:
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.bias is None]


def _gemm_forward(linear, dispatcher: Dispatcher, original: Callable) -> Callable:
    def forward(x):
        a = x.reshape(-1, x.shape[-1])  # (M, K)
        n, k = linear.weight.shape
        op = dispatcher.select({"M": a.shape[0], "N": n, "K": k}, _dtype_name(x.dtype), x.device.type)
        if op is None:
            return original(x)
        return op(a, linear.weight).reshape(*x.shape[:-1], n)

    return forward


BINDINGS: tuple[Binding, ...] = (
    Binding("fused_add_rmsnorm_h*", _decoder_layers, lambda m, d: _norm_mismatch(m.post_attention_layernorm, d),
            lambda m: m.post_attention_layernorm.weight, _fused_add_forward),
    Binding("rmsnorm_h*", lambda model: [(n, m) for n, m in model.named_modules() if _is_llama_norm(m)],
            _norm_mismatch, lambda m: m.weight, _rmsnorm_forward),
    Binding("silu_and_mul_i*", _mlps, _mlp_mismatch, lambda m: m.gate_proj.weight, _silu_and_mul_forward,
            prepare=_fuse_gate_up),
    Binding("gemm_*", _linears, lambda m, d: None, lambda m: m.weight, _gemm_forward),
)


def binding_for(defn: Definition) -> Binding | None:
    """The binding of `defn`'s family, or None. A gemm binding needs the A, B -> C signature."""
    for b in BINDINGS:
        if fnmatch.fnmatchcase(defn.name, b.family):
            if b.family == "gemm_*" and (list(defn.inputs) != ["A", "B"] or list(defn.outputs) != ["C"]):
                continue
            return b
    return None


def families() -> list[str]:
    return [b.family for b in BINDINGS]
