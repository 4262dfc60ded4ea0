"""PyTorch (and FlashInfer's `python`, the same thing): the entry file imported as is."""

from __future__ import annotations

from solforge.bench.languages import LanguagePlugin, register_language


@register_language
class PytorchLanguage(LanguagePlugin):
    name = "pytorch"
    toolchain_modules = ("torch._inductor", "torch._dynamo")
    env_prefixes = ("TORCH_", "TORCHINDUCTOR_", "PYTORCH_")
    prompt_notes = "PyTorch: torch operations only; no forbidden call of the definition, however reached."


@register_language
class PythonLanguage(PytorchLanguage):
    """FlashInfer-Bench's name for a plain PyTorch solution."""

    name = "python"
