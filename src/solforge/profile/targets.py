"""What `solforge profile` runs: a model and the call that exercises it, from a TARGET string.

A TARGET is one of:

- a shipped config: `llama-3.1-8b`, `qwen2.5-7b`, `mixtral-8x7b`, or the Hub ids those were
  published under (`meta-llama/Llama-3.1-8B`, `Qwen/Qwen2.5-7B`, `mistralai/Mixtral-8x7B-v0.1`);
  the JSON files under `configs/` say where each value comes from;
- a local `config.json` (or a folder holding one);
- a Hugging Face model id whose config is already in the local HF cache (read with
  `local_files_only=True`: nothing is downloaded);
- a Python factory `path.py:fn` whose `fn()` returns `(model, example_inputs)`.

A transformers model is built from its config with random weights (`AutoConfig`, then
`AutoModelForCausalLM.from_config`), in the requested dtype, seeded, so two builds are the
same model. `layers` truncates `num_hidden_layers` so that a CPU can hold an 8B-shaped model.

Every failure a user can cause (an id not cached, a config without `architectures`, a
factory that raises) is a `SpecError` of one line naming the target.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solforge.spec import SpecError

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

# Shipped configs by the names a user types, lower-cased: the short name and the Hub id.
SHIPPED_CONFIGS: dict[str, str] = {
    "llama-3.1-8b": "llama-3.1-8b.json",
    "meta-llama/llama-3.1-8b": "llama-3.1-8b.json",
    "meta-llama/meta-llama-3.1-8b": "llama-3.1-8b.json",
    "qwen2.5-7b": "qwen2.5-7b.json",
    "qwen/qwen2.5-7b": "qwen2.5-7b.json",
    "mixtral-8x7b": "mixtral-8x7b.json",
    "mistralai/mixtral-8x7b-v0.1": "mixtral-8x7b.json",
}

STAGES = ("prefill", "decode")
DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class Target:
    """A built model and one forward call of it at the requested shapes."""

    name: str  # what the user gave
    slug: str  # a short lower-case name for definition names and tags, e.g. "llama-3.1-8b-2l"
    model: Any  # torch.nn.Module, in eval mode
    call: Callable[[], Any]  # one forward at the requested shapes (decode: one step over a filled cache)
    tokens_per_call: int  # tokens the call processes (B*T in prefill, B in decode)
    stage: str  # "prefill" or "decode"
    batch: int | None = None
    seq_len: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the transformers config as a dict ({} for a factory)
    make_inputs: Callable[[int], dict[str, Any]] | None = None  # seed -> fresh kwargs of the same shapes


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "model"


def torch_dtype(name: str):
    """The torch dtype of `name` (one of DTYPES); SpecError for anything else."""
    import torch

    if name not in DTYPES:
        raise SpecError(f"--dtype: expected one of {', '.join(DTYPES)}, got '{name}'")
    return getattr(torch, name)


def read_config(target: str) -> tuple[dict[str, Any], str]:
    """The config dict of a shipped name, a local config.json (or folder) or a cached Hub id,
    and where it came from. Raises SpecError (one line) when it is none of those."""
    shipped = SHIPPED_CONFIGS.get(target.lower())
    if shipped is not None:
        data = json.loads((CONFIGS_DIR / shipped).read_text())
        return {k: v for k, v in data.items() if not k.startswith("_solforge")}, f"shipped config {shipped}"
    path = Path(target)
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SpecError(f"{path}: not a JSON config ({exc})") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a JSON object (a transformers config)")
        return data, str(path)
    if target.endswith(".json"):
        raise SpecError(f"{target}: no such file")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers brings huggingface_hub
        raise SpecError("transformers is not installed: pip install 'solforge[profile]'") from None
    cached = try_to_load_from_cache(target, "config.json") if "/" in target else None
    if not isinstance(cached, str):
        names = sorted({k for k in SHIPPED_CONFIGS if "/" not in k})
        raise SpecError(f"{target}: not a shipped config ({', '.join(names)}), not a local config.json, and not in "
                        "the local Hugging Face cache (solforge downloads nothing: pass a config.json)")
    return json.loads(Path(cached).read_text()), f"HF cache {cached}"


def build_transformers_model(config: dict[str, Any], where: str, *, layers: int | None, dtype: str,
                             device: str, seed: int):
    """A causal LM with random weights from a config dict; returns (model, config dict used)."""
    import torch

    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise SpecError(f"{where}: architectures: missing; expected a list such as [\"LlamaForCausalLM\"]")
    if not isinstance(config.get("model_type"), str):
        raise SpecError(f"{where}: model_type: missing; expected e.g. \"llama\"")
    config = dict(config)
    if layers is not None:
        total = int(config.get("num_hidden_layers", 0))
        if layers < 1 or (total and layers > total):
            raise SpecError(f"--layers: expected 1..{total or 'num_hidden_layers'}, got {layers}")
        config["num_hidden_layers"] = layers
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise SpecError("transformers is not installed: pip install transformers") from None
    model_type = config.pop("model_type")
    known = {k: v for k, v in config.items() if k not in ("transformers_version",)}
    try:
        hf_config = AutoConfig.for_model(model_type, **known)
    except (ValueError, KeyError) as exc:
        raise SpecError(f"{where}: model_type: '{model_type}' is not known to transformers ({exc})") from None
    hf_config.architectures = archs
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(hf_config, dtype=torch_dtype(dtype))
    except ValueError as exc:
        raise SpecError(f"{where}: architectures: {archs[0]} is not a causal LM transformers can build "
                        f"({str(exc).splitlines()[0]})") from None
    model = model.to(device).eval()
    return model, hf_config.to_dict()


def load_factory(spec: str) -> tuple[Any, Any]:
    """`path.py:fn` -> fn()'s (model, example_inputs). SpecError (one line) when the file or
    the function is missing, or when the factory raises or returns something else."""
    file, _, fn_name = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise SpecError(f"{spec}: no such file '{file}'")
    module_name = f"solforge_factory_{abs(hash(str(path.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(module_name, path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[module_name] = module
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file: any failure is their error, in one line
        raise SpecError(f"{spec}: importing '{file}' raised {type(exc).__name__}: {_first_line(exc)}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise SpecError(f"{spec}: '{file}' has no function '{fn_name}'")
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001
        raise SpecError(f"{spec}: the factory raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not (isinstance(result, tuple) and len(result) == 2):
        raise SpecError(f"{spec}: the factory returned {type(result).__name__}; expected (model, example_inputs)")
    return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def parse_input_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """'input_ids=1x128,attention_mask=1x128' -> {'input_ids': (1, 128), ...}; SpecError when malformed."""
    out: dict[str, tuple[int, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, dims = part.partition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name.strip() or not shape or min(shape) < 1:
            raise SpecError(f"--input-shapes: '{part}': expected NAME=AxBxC with positive sizes")
        out[name.strip()] = shape
    if not out:
        raise SpecError("--input-shapes: expected NAME=AxBxC[,NAME=...]")
    return out


def load_target(target: str, *, device: str = "cpu", dtype: str = "bfloat16", layers: int | None = None,
                batch: int = 1, seq_len: int = 128, stage: str = "prefill",
                input_shapes: dict[str, tuple[int, ...]] | None = None, seed: int = 0) -> Target:
    """Build the model of `target` and one forward call at the requested shapes (module docstring).

    Prefill calls the model on `(batch, seq_len)` token ids; decode fills a KV cache with
    `seq_len` tokens, then each call runs one token per sequence and crops the cache back,
    so repeated calls see the same shapes. `input_shapes` replaces the (batch, seq_len) of a
    transformers model's `input_ids`, or regenerates a factory's named inputs (same dtype).
    Raises SpecError for every bad input, one line each.
    """
    import torch

    if stage not in STAGES:
        raise SpecError(f"--stage: expected prefill or decode, got '{stage}'")
    if batch < 1 or seq_len < 1:
        raise SpecError("--batch, --seq-len: expected positive sizes")
    file, sep, fn = target.rpartition(":")
    if sep and file.endswith(".py"):
        model, example = load_factory(target)
        if not isinstance(model, torch.nn.Module):
            raise SpecError(f"{target}: the factory's model is a {type(model).__name__}, not a torch.nn.Module")
        model = model.to(device).eval()
        args, kwargs = _as_args(example, device)
        if input_shapes:
            kwargs = {**kwargs}
            for name, shape in input_shapes.items():
                if name not in kwargs or not torch.is_tensor(kwargs[name]):
                    raise SpecError(f"--input-shapes: '{name}' is not a tensor keyword input of {target}")
                kwargs[name] = _like(kwargs[name], shape, seed)
        first = next((t for t in (*args, *kwargs.values()) if torch.is_tensor(t)), None)
        tokens = int(first.shape[0] * (first.shape[1] if first.dim() > 1 else 1)) if first is not None else 1

        def call():
            return model(*args, **kwargs)

        return Target(target, slugify(Path(file).stem + "-" + fn), model, call, tokens, stage)

    config, where = read_config(target)
    model, used = build_transformers_model(config, where, layers=layers, dtype=dtype, device=device, seed=seed)
    if input_shapes:
        if set(input_shapes) != {"input_ids"} or len(input_shapes["input_ids"]) != 2:
            raise SpecError("--input-shapes: a transformers model takes input_ids=BxT only")
        batch, seq_len = input_shapes["input_ids"]
    vocab = int(used.get("vocab_size") or 32000)
    slug = slugify(Path(where).stem if target.endswith(".json") else target.split("/")[-1])
    if layers is not None:
        slug += f"-{layers}l"
    make = _token_inputs(vocab, batch, seq_len, device)
    call = _prefill_call(model, make(seed)) if stage == "prefill" else _decode_call(model, make(seed), vocab, device)
    tokens = batch * seq_len if stage == "prefill" else batch
    return Target(target, slug, model, call, tokens, stage, batch, seq_len, used, make)


def crop_to(cache, length: int) -> None:
    """Cut a transformers KV cache back to `length` tokens (newer transformers take the
    number to remove as a negative count, older ones the length to keep)."""
    extra = cache.get_seq_length() - length
    if extra <= 0:
        return
    try:
        cache.crop(-extra)
    except ValueError:
        cache.crop(length)


def _token_inputs(vocab: int, batch: int, seq_len: int, device: str) -> Callable[[int], dict[str, Any]]:
    def make(seed: int) -> dict[str, Any]:
        import torch

        g = torch.Generator().manual_seed(seed)
        return {"input_ids": torch.randint(0, vocab, (batch, seq_len), generator=g).to(device)}  # (B, T)

    return make


def _prefill_call(model, inputs: dict[str, Any]) -> Callable[[], Any]:
    def call():
        return model(**inputs, use_cache=False)

    return call


def _decode_call(model, inputs: dict[str, Any], vocab: int, device: str) -> Callable[[], Any]:
    import torch

    ids = inputs["input_ids"]  # (B, T)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None or not hasattr(cache, "crop"):
        raise SpecError("--stage decode: this model returns no croppable KV cache; profile --stage prefill")
    filled = ids.shape[1]
    step = torch.randint(0, vocab, (ids.shape[0], 1), generator=torch.Generator().manual_seed(1)).to(device)  # (B, 1)
    key = "cache" if hasattr(out, "cache") else "past_key_values"

    def call():
        result = model(input_ids=step, use_cache=True, **{key: cache})
        crop_to(cache, filled)  # the next call sees the same cache length
        return result

    return call


def _as_args(example, device: str) -> tuple[tuple, dict]:
    import torch

    def move(x):
        return x.to(device) if torch.is_tensor(x) else x

    if isinstance(example, dict):
        return (), {k: move(v) for k, v in example.items()}
    if isinstance(example, (tuple, list)):
        return tuple(move(v) for v in example), {}
    return (move(example),), {}


def _like(t, shape: tuple[int, ...], seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    if t.dtype.is_floating_point:
        return torch.randn(shape, generator=g, dtype=torch.float32).to(dtype=t.dtype, device=t.device)
    high = int(t.max().item()) + 1 if t.numel() else 2
    return torch.randint(0, max(high, 2), shape, generator=g).to(dtype=t.dtype, device=t.device)
