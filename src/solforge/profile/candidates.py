"""From attributed op records to fusable candidates, each mapped to a Definition at the real shapes.

Grouping (by module structure, the way transformers' Llama-family models are built):

- `fused_add_rmsnorm`: the residual add before a decoder layer's `post_attention_layernorm`,
  and that norm; one kernel does both (what `solforge kernelize` swaps in).
- `rmsnorm`: every other RMSNorm (the layers' `input_layernorm`, the final norm).
- `silu_and_mul`: the MLP's activation and the product with `up_proj`'s output (SwiGLU).
- `rope`: the rotary embedding applied to q and k inside attention.
- `gemm`: every `nn.Linear` (the projections and the LM head), one workload per shape.
- `attention`: scaled dot-product attention.
- `embedding`: the token embedding lookup.
- everything else is `other` (views, the rotary tables, masks, framework ops).

Each kind has a template in the built-in suite (its op type, input and output names,
reference). A candidate maps to a built-in definition that has the template's signature,
the same const axes, the model's dtype and the same reference constants (e.g. `eps`);
otherwise a new Definition is made from the template with the model's sizes, dtype and
constants, and workloads at the profiled shapes plus CPU-sized smoke ones.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from solforge.profile.profiler import ModuleInfo, OpRecord, ProfileRun
from solforge.spec import Definition, DType, RandomInput, Workload, WorkloadExtension


@dataclass(frozen=True)
class Kind:
    """A candidate kind: its built-in template and the definitions of its family."""

    name: str
    label: str
    template: str  # a built-in definition with the kind's signature and reference
    family: str  # fnmatch pattern of the built-in definitions of this semantics


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("fused_add_rmsnorm", "residual add + RMSNorm", "fused_add_rmsnorm_h4096", "fused_add_rmsnorm_h*"),
    Kind("rmsnorm", "RMSNorm", "rmsnorm_h4096", "rmsnorm_h*"),
    Kind("silu_and_mul", "gate/up SiLU-and-mul", "silu_and_mul_i14336", "silu_and_mul_i*"),
    Kind("rope", "q/k rotary (NeoX)", "rope_neox_h32_kv8_d128", "rope_neox_*"),
    Kind("gemm", "projections (GEMM)", "gemm_bf16_llama31_8b", "gemm_*"),
    Kind("attention", "attention (GQA prefill)", "gqa_prefill_causal_h32_kv8_d128", "gqa_prefill_causal_*"),
    Kind("attention_decode", "attention (GQA decode)", "gqa_decode_h32_kv8_d128", "gqa_decode_h*"),
    Kind("embedding", "token embedding", "embedding_v128256_h4096", "embedding_v*"),
)}

_SDPA = ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product")
_ROPE_OPS = ("aten::mul", "aten::neg", "aten::cat", "aten::add", "aten::slice")
_DTYPES = {"c10::BFloat16": "bfloat16", "c10::Half": "float16", "float": "float32", "double": "float64"}


@dataclass
class Call:
    """Calls of one candidate at one shape per model forward: var-axis values and how many."""

    axes: dict[str, int]
    count: int


@dataclass
class Candidate:
    """A group of ops one kernel could replace, with its time per forward and its shapes."""

    kind: str
    label: str
    dtype: str  # the model's element type for this candidate's tensors
    consts: dict[str, int]  # const axes of the definition (e.g. hidden_size)
    constants: dict[str, float] = field(default_factory=dict)  # reference constants, e.g. {"eps": 1e-5}
    measured_us: float = 0.0  # self time per forward, microseconds
    calls: list[Call] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    definition: str | None = None
    source: str | None = None  # "builtin" or "new"
    sol_us: float | None = None  # SOL time per forward at the real shapes, microseconds

    def add_call(self, axes: dict[str, int], count: int = 1) -> None:
        for c in self.calls:
            if c.axes == axes:
                c.count += count
                return
        self.calls.append(Call(dict(axes), count))


def _dtype(name: str) -> str:
    return _DTYPES.get(name, name)


def _role(info: ModuleInfo) -> str:
    m = info.module
    if info.cls.endswith("RMSNorm") and "gemma" not in info.cls.lower():
        return "norm"
    if all(hasattr(m, c) for c in ("input_layernorm", "post_attention_layernorm", "self_attn")):
        return "decoder"
    if all(hasattr(m, c) for c in ("gate_proj", "up_proj", "down_proj")):
        return "mlp"
    if hasattr(m, "q_proj") and hasattr(m, "k_proj"):
        return "attention"
    if info.layer_name == "rotary_pos_emb":
        return "rope"
    import torch

    if isinstance(m, torch.nn.Linear):
        return "linear"
    if isinstance(m, torch.nn.Embedding):
        return "embedding"
    return "other"


def group_candidates(run: ProfileRun, stage: str) -> tuple[list[Candidate], float]:
    """Candidates of one profiling run, largest measured time first, and the time per
    forward (microseconds) of the ops left in `other`."""
    infos = run.modules
    roles = {name: _role(info) for name, info in infos.items()}
    by_module: dict[str, list[OpRecord]] = {}
    for r in run.records:
        by_module.setdefault(r.module, []).append(r)
    out: dict[tuple, Candidate] = {}
    other_us = 0.0

    def cand(kind: str, dtype: str, consts: dict[str, int], constants: dict | None = None) -> Candidate:
        key = (kind, dtype, tuple(sorted(consts.items())), tuple(sorted((constants or {}).items())))
        if key not in out:
            label = KINDS[kind].label
            out[key] = Candidate(kind, label, dtype, dict(consts), dict(constants or {}))
        return out[key]

    mid_adds: dict[str, OpRecord] = {}  # decoder layer -> its residual add before post_attention_layernorm
    for name, recs in by_module.items():
        if roles.get(name) != "decoder":
            continue
        adds = sorted((r for r in recs if r.op == "aten::add" and len(r.input_shapes) >= 2
                       and r.input_shapes[0] and r.input_shapes[0] == r.input_shapes[1]), key=lambda r: r.start_us)
        if adds:
            mid_adds[name] = adds[0]

    for name, recs in by_module.items():
        info, role = infos[name], roles.get(name, "other")
        parent_role = roles.get(info.parent or "", "other")
        t = sum(r.self_us for r in recs)
        m = info.module
        if role == "norm":
            hidden = int(m.weight.shape[0])
            eps = float(getattr(m, "variance_epsilon", getattr(m, "eps", 1e-6)))
            tokens = _tokens(recs, hidden)
            dtype = str(m.weight.dtype).replace("torch.", "")
            fused = name.endswith("post_attention_layernorm") and info.parent in mid_adds
            c = cand("fused_add_rmsnorm" if fused else "rmsnorm", dtype, {"hidden_size": hidden}, {"eps": eps})
            c.measured_us += t + (mid_adds[info.parent].self_us if fused else 0.0)
            c.add_call({"num_tokens": tokens})
            c.modules.append(name)
        elif role == "decoder":
            mid = mid_adds.get(name)
            other_us += t - (mid.self_us if mid is not None else 0.0)
        elif role == "mlp" or (parent_role == "mlp" and name.endswith("act_fn")):
            mlp = m if role == "mlp" else infos[info.parent].module
            inter = int(mlp.gate_proj.out_features)
            dtype = str(mlp.gate_proj.weight.dtype).replace("torch.", "")
            c = cand("silu_and_mul", dtype, {"intermediate_size": inter})
            c.measured_us += t
            if role == "mlp":
                c.add_call({"num_tokens": _tokens(recs, inter)})
                c.modules.append(name)
        elif role == "linear":
            w = m.weight
            dtype = str(w.dtype).replace("torch.", "")
            c = cand("gemm", dtype, {})
            c.measured_us += t
            root = next((r for r in recs if r.op in ("aten::linear", "aten::matmul", "aten::addmm")), None)
            if root is not None and root.input_shapes and root.input_shapes[0]:
                x = root.input_shapes[0]
                c.add_call({"M": _prod(x[:-1]), "N": int(w.shape[0]), "K": int(w.shape[1])})
            c.modules.append(name)
        elif role == "embedding":
            w = m.weight
            c = cand("embedding", str(w.dtype).replace("torch.", ""), {"hidden_size": int(w.shape[1])})
            c.measured_us += t
            ids = next((r.input_shapes[1] for r in recs if len(r.input_shapes) > 1), [1])
            c.add_call({"num_tokens": _prod(ids), "vocab_size": int(w.shape[0])})
            c.modules.append(name)
        elif role in ("attention", "rope"):
            attn = m if role == "attention" else infos.get(info.parent or "", info).module
            head_dim = int(getattr(attn, "head_dim", 0) or 0)
            for r in recs:
                if r.op.startswith(_SDPA) and len(r.input_shapes) >= 3 and len(r.input_shapes[0]) == 4:
                    (b, hq, tq, d), (_, hkv, tk, _) = r.input_shapes[0], r.input_shapes[1]
                    dtype = _dtype(r.input_dtypes[0]) if r.input_dtypes else "bfloat16"
                    consts = {"num_qo_heads": hq, "num_kv_heads": hkv, "head_dim": d}
                    if stage == "decode" and tq == 1:
                        c = cand("attention_decode", dtype, consts)
                        c.add_call({"batch_size": b, "kv_len": tk})
                    else:
                        c = cand("attention", dtype, consts)
                        c.add_call({"batch_size": b, "seq_len": tq})
                    c.measured_us += r.self_us
                    c.modules.append(name)
                elif (role == "rope" or r.op in _ROPE_OPS) and r.input_shapes and len(r.input_shapes[0]) == 4 \
                        and (not head_dim or r.input_shapes[0][-1] == head_dim):
                    heads_q = int(getattr(getattr(attn, "config", None), "num_attention_heads", 0) or 0)
                    heads_kv = int(getattr(getattr(attn, "config", None), "num_key_value_heads", 0) or heads_q)
                    dtype = _dtype(r.input_dtypes[0]) if r.input_dtypes else "bfloat16"
                    consts = {"num_qo_heads": heads_q, "num_kv_heads": heads_kv, "head_dim": head_dim}
                    c = cand("rope", dtype, consts)
                    c.measured_us += r.self_us
                    if name not in c.modules:
                        b, _, tq, _ = r.input_shapes[0]
                        max_pos = int(getattr(getattr(attn, "config", None), "max_position_embeddings", 0) or 4096)
                        c.add_call({"num_tokens": b * tq, "max_position": max_pos})
                        c.modules.append(name)
                else:
                    other_us += r.self_us
        else:
            other_us += t
    cands = sorted(out.values(), key=lambda c: -c.measured_us)
    return cands, other_us


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def _tokens(recs: list[OpRecord], width: int) -> int:
    """Rows of the module's widest input whose last dim is `width`: B*T for (B, T, width)."""
    best = 1
    for r in recs:
        for s in r.input_shapes:
            if s and s[-1] == width:
                best = max(best, _prod(s[:-1]))
    return best


# -- definitions ------------------------------------------------------------------------


def _float_inputs(defn: Definition) -> list[str]:
    return [n for n, t in defn.inputs.items() if t.dtype is DType.bfloat16]


def matches(defn: Definition, template: Definition, kind: Kind, cand: Candidate) -> bool:
    """Whether built-in `defn` computes `cand`: the template's op type and signature, a name of
    the kind's family, the candidate's const axes, dtype and reference constants."""
    from solforge.knowledge import reference_constants

    if defn.op_type != template.op_type or list(defn.inputs) != list(template.inputs) \
            or list(defn.outputs) != list(template.outputs) or not fnmatch.fnmatchcase(defn.name, kind.family):
        return False
    for axis, value in cand.consts.items():
        a = defn.axes.get(axis)
        if a is None or getattr(a, "type", None) != "const" or a.value != value:
            return False
    for name in _float_inputs(template):
        if defn.inputs[name].dtype.value != cand.dtype:
            return False
    found = reference_constants(defn.reference)
    return all(name in found and abs(found[name] - value) <= 1e-12 * max(1.0, abs(value))
               for name, value in cand.constants.items())


def new_definition(template: Definition, kind: Kind, cand: Candidate, slug: str, taken: set[str]) -> Definition:
    """A definition of `cand` made from `template`: the model's const sizes, dtype and constants."""
    d = template.model_copy(deep=True)
    for axis, value in cand.consts.items():
        d.axes[axis].value = value
    for tensors in (d.inputs, d.outputs):
        for spec in tensors.values():
            if spec.dtype is DType.bfloat16:
                spec.dtype = DType(cand.dtype)
    for name, value in cand.constants.items():
        d.reference = re.sub(rf"(\b{name}\s*=\s*)[-+0-9.eE]+([^\n]*)", lambda m: f"{m.group(1)}{value!r}  # from the "
                             f"model's config ({slug})", d.reference, count=1)
    base = {
        "fused_add_rmsnorm": "fused_add_rmsnorm_h{hidden_size}", "rmsnorm": "rmsnorm_h{hidden_size}",
        "silu_and_mul": "silu_and_mul_i{intermediate_size}",
        "rope": "rope_neox_h{num_qo_heads}_kv{num_kv_heads}_d{head_dim}", "gemm": "gemm",
        "attention": "gqa_prefill_causal_h{num_qo_heads}_kv{num_kv_heads}_d{head_dim}",
        "attention_decode": "gqa_decode_h{num_qo_heads}_kv{num_kv_heads}_d{head_dim}",
        "embedding": "embedding_v{vocab}_h{hidden_size}",
    }[kind.name].format(vocab=max((c.axes.get("vocab_size", 0) for c in cand.calls), default=0), **cand.consts)
    if kind.name == "gemm":
        base = f"gemm_{cand.dtype}"
    elif cand.dtype != "bfloat16":
        base += f"_{cand.dtype}"
    name = base
    if name in taken:
        name = f"{base}_{slug}"
    d.name = name
    d.tags = [f"model:{slug}"] + [t for t in template.tags if t.startswith("stage:")]
    d.description = (f"{kind.label} of {slug}, made by `solforge profile` from the built-in '{template.name}' "
                     f"with the model's sizes {cand.consts or '(all axes var)'}, dtype {cand.dtype}"
                     + (f" and constants {cand.constants}" if cand.constants else "") + ". Template: "
                     + (template.description or ""))
    return d


def held_out_tokens(tokens: int) -> int:
    """The held-out token count beside a profiled one: half again plus 3, a shape near what
    the model runs that no search saw (and not a power of two, which tuned kernels favour)."""
    return tokens + tokens // 2 + 3


def token_axis_of(axes: dict[str, int]) -> str | None:
    """The axis of `axes` (a call's var axis name -> size) that counts tokens, "num_tokens" or
    GEMM's "M", the one a held-out shape varies (`held_out_tokens`); None when it has neither."""
    return next((a for a in ("num_tokens", "M") if a in axes), None)


def workloads_for(defn: Definition, cand: Candidate, stage: str) -> list[Workload]:
    """Search workloads at the profiled shapes, CPU-sized smoke ones, and one held-out shape."""
    inputs = {n: RandomInput() for n in defn.inputs}
    out: list[Workload] = []
    seen: set[tuple] = set()

    def add(axes: dict[str, int], label: str, smoke: bool = False, held_out: bool = False) -> None:
        key = (tuple(sorted(axes.items())), smoke, held_out)
        if key in seen:
            return
        seen.add(key)
        tag = "-".join(f"{k}{v}" for k, v in axes.items())
        prefix = "smoke-" if smoke else ("heldout-" if held_out else "")
        out.append(Workload(uuid=f"{defn.name}-{prefix}{tag}", axes=dict(axes), inputs=dict(inputs),
                            solforge=WorkloadExtension(smoke=smoke, held_out=held_out, label=label)))

    for c in cand.calls:
        add(c.axes, f"profiled {stage} " + ",".join(f"{k}={v}" for k, v in c.axes.items()))
    first = cand.calls[0].axes if cand.calls else {}
    token_axis = token_axis_of(first)
    if token_axis is not None:
        for t in (1, 7, 64):
            add({**first, token_axis: t}, f"smoke {token_axis}={t}", smoke=True)
        held = held_out_tokens(first[token_axis])
        add({**first, token_axis: held}, f"held-out {token_axis}={held}", held_out=True)
    elif "batch_size" in first:
        small = {**first, "batch_size": 1}
        for key in ("seq_len", "kv_len"):
            if key in small:
                small[key] = min(small[key], 16)
        add(small, "smoke " + ",".join(f"{k}={v}" for k, v in small.items()), smoke=True)
    return out


def map_candidates(cands: list[Candidate], slug: str, stage: str) -> tuple[dict[str, Definition], dict[str, list[Workload]]]:
    """Fill each candidate's `definition` and `source`; returns the new definitions and their workloads."""
    from solforge.problems import builtin_dataset

    ds = builtin_dataset()
    new_defs: dict[str, Definition] = {}
    new_wls: dict[str, list[Workload]] = {}
    for c in cands:
        kind = KINDS[c.kind]
        template = ds.definitions[kind.template]
        if c.kind == "rope" and not c.consts.get("head_dim"):
            continue
        found = [d for name, d in sorted(ds.definitions.items()) if matches(d, template, kind, c)]
        if c.kind == "gemm":  # var M, N, K: prefer the model's own GEMM definition where the suite has one
            found.sort(key=lambda d: (f"model:{slug}" not in d.tags, d.name != kind.template))
        if found:
            c.definition, c.source = found[0].name, "builtin"
            continue
        same = next((d for d in new_defs.values() if matches(d, template, kind, c) or
                     (c.kind == "gemm" and d.op_type == "gemm" and d.inputs["A"].dtype.value == c.dtype)), None)
        if same is not None:
            c.definition, c.source = same.name, "new"
            for w in workloads_for(same, c, stage):
                if all(w.uuid != x.uuid for x in new_wls[same.name]):
                    new_wls[same.name].append(w)
            continue
        d = new_definition(template, kind, c, slug, set(ds.definitions) | set(new_defs))
        new_defs[d.name] = d
        new_wls[d.name] = workloads_for(d, c, stage)
        c.definition, c.source = d.name, "new"
    return new_defs, new_wls


def sol_time_us(defn: Definition, cand: Candidate, peaks: Any) -> float | None:
    """The candidate's SOL time per forward at `peaks`, microseconds: the sum over its calls
    of `roofline.sol_bound` of each call's workload, times its count. None without peaks or
    when the work cannot be counted."""
    if peaks is None:
        return None
    from solforge.roofline import count_work, sol_bound
    from solforge.spec import SpecError

    total = 0.0
    for c in cand.calls:
        wl = Workload(uuid="profile", axes=c.axes, inputs={n: RandomInput() for n in defn.inputs})
        try:
            total += sol_bound(count_work(defn, wl), peaks).time_ms * 1e3 * c.count
        except (SpecError, ValueError, KeyError):
            return None
    return total
