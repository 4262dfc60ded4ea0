"""Solution: an implementation of a Definition, as FlashInfer Trace writes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, Field, GetCoreSchemaHandler, field_validator
from pydantic_core import CoreSchema, core_schema


class _Languages(type):
    """Iterating `Language` gives every registered language, the built-in ones first."""

    def __iter__(cls) -> Iterator[Language]:
        return iter(list(cls._registry.values()))  # type: ignore[attr-defined]


class Language(str, metaclass=_Languages):
    """How a solution is built, by name: `pytorch` (`python` is FlashInfer's name for
    it), `triton`, `cuda`, `numba`, and any language a plugin registers
    (`Language.register`, done by `solforge.bench.languages` for its plugins). Names are
    case-insensitive ('Python' is `python`). Instances are interned, so `is` compares
    them; `Language("x")` raises ValueError for a name nobody registered."""

    _registry: ClassVar[dict[str, Language]] = {}
    _own_kernels: ClassVar[set[str]] = set()

    def __new__(cls, name: object) -> Language:
        key = str(name).strip().lower()
        try:
            return cls._registry[key]
        except KeyError:
            raise ValueError(f"unknown language '{name}' (known: {', '.join(cls._registry)})") from None

    @classmethod
    def register(cls, name: str, *, launches_own_kernels: bool) -> Language:
        """The language `name` (lower case), registered once; a second registration of a
        name returns the first."""
        key = name.strip().lower()
        if key not in cls._registry:
            cls._registry[key] = str.__new__(cls, key)
            if launches_own_kernels:
                cls._own_kernels.add(key)
        return cls._registry[key]

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def launches_own_kernels(self) -> bool:
        """Whether a solution in this language must launch kernels of its own (the decoy guard)."""
        return str.__str__(self) in self._own_kernels

    def __repr__(self) -> str:
        return f"Language({self.value!r})"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return Language, (self.value,)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.plain_serializer_function_ser_schema(str),
            json_schema_input_schema=core_schema.str_schema())

    @classmethod
    def _validate(cls, value: object) -> Language:
        return value if isinstance(value, Language) else cls(value)

    pytorch: ClassVar[Language]
    python: ClassVar[Language]
    triton: ClassVar[Language]
    cuda: ClassVar[Language]
    numba: ClassVar[Language]


Language.pytorch = Language.register("pytorch", launches_own_kernels=False)
Language.python = Language.register("python", launches_own_kernels=False)
Language.triton = Language.register("triton", launches_own_kernels=True)
Language.cuda = Language.register("cuda", launches_own_kernels=True)
Language.numba = Language.register("numba", launches_own_kernels=True)


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
