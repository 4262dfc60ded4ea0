"""Solution: an implementation of a Definition, as FlashInfer Trace writes it."""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field, field_validator


class Language(str, enum.Enum):
    """How a solution is built. `python` is FlashInfer's name for plain PyTorch."""

    pytorch = "pytorch"
    python = "python"
    triton = "triton"
    cuda = "cuda"
    numba = "numba"

    @property
    def launches_own_kernels(self) -> bool:
        """Whether a solution in this language must launch kernels of its own (the decoy guard)."""
        return self in (Language.triton, Language.cuda, Language.numba)


class BuildSpec(BaseModel):
    """How to build and call a solution."""

    language: Language
    target_hardware: list[str] = Field(default_factory=list)
    entry_point: str = Field(
        description="'file.py::function'; for language cuda also 'file.cu::function', a function the "
        "harness builds with torch.utils.cpp_extension.load_inline and binds."
    )
    dependencies: list[str] = Field(default_factory=list)
    destination_passing_style: bool = Field(
        default=True,
        description="True: the entry point also takes the outputs, preallocated, as keyword arguments, "
        "and writes them. False: it returns the outputs. Absent means True, as FlashInfer-Bench and "
        "SOL-ExecBench read it; solforge always writes it.",
    )

    def model_post_init(self, context: object, /) -> None:
        self.__pydantic_fields_set__.add("destination_passing_style")

    @field_validator("entry_point")
    @classmethod
    def _entry_point_form(cls, v: str) -> str:
        file, sep, fn = v.partition("::")
        if not sep or not file.endswith((".py", ".cu", ".cpp")) or not fn.isidentifier():
            raise ValueError(f"expected 'file.py::function' (or 'file.cu::function' for CUDA C++), got '{v}'")
        return v

    @property
    def entry_file(self) -> str:
        return self.entry_point.partition("::")[0]

    @property
    def entry_function(self) -> str:
        return self.entry_point.partition("::")[2]


class SourceFile(BaseModel):
    path: str = Field(min_length=1)
    content: str


class Solution(BaseModel):
    """Source files plus a build spec; the entry point is called with keyword arguments
    named as the definition's inputs (plus its outputs in destination-passing style)."""

    name: str = Field(min_length=1)
    definition: str = Field(min_length=1)
    author: str = "unknown"
    description: str | None = None
    spec: BuildSpec
    sources: list[SourceFile]

    def source(self, path: str) -> SourceFile | None:
        return next((s for s in self.sources if s.path == path), None)

    @property
    def entry_source(self) -> SourceFile | None:
        return self.source(self.spec.entry_file)
