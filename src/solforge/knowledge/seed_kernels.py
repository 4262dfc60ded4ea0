"""Seed kernels: parameterized solution sources the evolution engine starts from.

A seed is one Python file under `seeds/<language>/<stem>.py` in this package (package
data, not a module: nothing here imports it). The file is a complete solution source,
and this is the contract the engine relies on:

- `run(<inputs...>, <outputs...>)` is the entry point, in destination-passing style: it
  takes the definition's inputs and then its outputs, by keyword, named exactly as the
  definition names them; it writes the (preallocated) outputs and returns None.
- `SEED = {"op_type": str, "family": str, "language": "triton" | "numba",
  "description": str, "techniques": [str, ...], "definitions": [str, ...],
  "constants": {str: str}}` is a dict literal. `op_type` is the definition's op type
  (`rmsnorm`, `softmax`, ...); `family` names the algorithm (seeds of one family may be
  crossed over: their parameters mean the same thing); `language` must match the
  folder; `techniques` are playbook terms, e.g. "fusion". `definitions` are glob
  patterns (fnmatch) of the definition names whose semantics the kernel implements,
  e.g. "rmsnorm_h*": op type and signature alone cannot tell SiLU from GELU, or
  Gemma's `x * (1 + weight)` RMSNorm from Llama's `x * weight`. `constants` (optional)
  maps a module-level numeric constant of the seed to a variable that the definition's
  reference assigns a literal, in `run` or at module level, e.g. {"EPS": "eps"}: the
  Solution takes the reference's value (1e-5 for Llama, 1e-6 for Qwen, 1e-12 for ViT).
- `PARAMS = {name: value}` is a dict literal of the default parameter values, and
  `PARAM_SPACE = {name: [value, ...]}` a dict literal of the declared ranges: the same
  names, each a non-empty list of distinct int, float, bool or str values, the default
  among them. Every point of the product space is a valid kernel for every workload of
  the definitions the seed applies to (kernels mask or loop where sizes do not divide).
- The source reads its parameters from `PARAMS` (e.g. `PARAMS["BLOCK_SIZE"]`), so a
  variant is the same file with only the `PARAMS` literal rewritten
  (`SeedKernel.with_params`); nothing else in the file depends on which point it is.
- The module docstring says what the kernel does, how, and why it is fast; the
  knowledge index searches it.

Metadata is read with `ast.literal_eval`, never by importing the file, because
importing triton or numba takes seconds and a seed may target a device this machine
lacks. A seed applies to a definition (`SeedKernel.applies_to`) when its `op_type`
equals the definition's, its `run` parameter names equal the definition's inputs
followed by its outputs, in order, the definition's name matches one of its
`definitions` patterns, and every one of its `constants` is found in the definition's
reference.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from solforge.spec import BuildSpec, Definition, Language, Solution, SourceFile, SpecError

SEEDS_ROOT = Path(__file__).resolve().parent / "seeds"
SEED_LANGUAGES: tuple[Language, ...] = (Language.triton, Language.numba)
SEED_AUTHOR = "solforge-seed"

ParamValue = int | float | bool | str

# Where each language's solutions run, and what they import (Solution.spec fields).
_TARGET_HARDWARE = {Language.triton: ["cuda"], Language.numba: ["cpu"]}
_DEPENDENCIES = {Language.triton: ["torch", "triton"], Language.numba: ["torch", "numpy", "numba"]}
_SEED_KEYS = {
    "op_type": str, "family": str, "language": str, "description": str, "techniques": list, "definitions": list,
}


@dataclass(frozen=True, eq=False)
class SeedKernel:
    """One seed kernel file, its metadata read from the source without importing it.

    Instances are shared (`load_seeds` caches them); their mappings are read-only.
    """

    name: str  # "<language>/<stem>", unique across the knowledge base
    path: Path  # the .py file
    op_type: str  # the definitions' op type it implements, e.g. "rmsnorm"
    family: str  # the algorithm; parameters of one family mean the same thing
    language: Language  # Language.triton (CUDA) or Language.numba (CPU)
    description: str  # one or two sentences
    techniques: tuple[str, ...]  # playbook terms, e.g. ("fusion", "vectorized access")
    definitions: tuple[str, ...]  # fnmatch patterns of the definition names it implements
    constants: Mapping[str, str]  # seed constant -> the reference's variable that gives its value
    params: Mapping[str, ParamValue]  # defaults, in PARAM_SPACE order
    param_space: Mapping[str, tuple[ParamValue, ...]]  # declared allowed values per parameter
    run_args: tuple[str, ...]  # run's parameter names, in order
    docstring: str  # the module docstring
    source: str  # the file's text, with the default PARAMS

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def entry_file(self) -> str:
        return f"{self.stem}.py"

    def applies_to(self, definition: Definition) -> bool:
        """Whether this seed implements `definition`: same op_type; run's parameters are the
        definition's inputs then its outputs, in order; the name matches a `definitions`
        pattern; and the reference assigns every variable that `constants` names."""
        expected = (*definition.inputs, *definition.outputs)
        return (
            self.op_type == definition.op_type
            and self.run_args == expected
            and any(fnmatch.fnmatchcase(definition.name, p) for p in self.definitions)
            and self.constants_for(definition) is not None
        )

    def constants_for(self, definition: Definition) -> dict[str, int | float] | None:
        """The seed's `constants` with the values the definition's reference assigns them,
        or None when the reference lacks one (or assigns it more than one value)."""
        found = reference_constants(definition.reference)
        if any(ref not in found for ref in self.constants.values()):
            return None
        return {name: found[ref] for name, ref in self.constants.items()}

    def resolve_params(self, params: Mapping[str, ParamValue] | None = None) -> dict[str, ParamValue]:
        """The defaults overridden by `params`, every value checked against PARAM_SPACE.

        Values compare by type and value (True is not 1). Raises SpecError (a
        ValueError) naming the file and the parameter for an unknown name or a value
        outside its declared range.
        """
        out = dict(self.params)
        for key, value in (params or {}).items():
            if key not in self.param_space:
                raise SpecError(
                    f"{self._where}: PARAMS['{key}']: unknown parameter (declared: {', '.join(self.param_space)})"
                )
            if not _in_space(value, self.param_space[key]):
                raise SpecError(
                    f"{self._where}: PARAMS['{key}']: {value!r} is not in PARAM_SPACE {list(self.param_space[key])}"
                )
            out[key] = value
        return out

    def with_params(self, params: Mapping[str, ParamValue] | None = None) -> str:
        """The seed's source with its `PARAMS` literal rewritten to the defaults overridden
        by `params`; the rest of the file is unchanged byte for byte.

        Raises SpecError (a ValueError) naming the parameter for an unknown name or a
        value outside PARAM_SPACE.
        """
        resolved = self.resolve_params(params)
        return _replace_assignment(self.source, "PARAMS", _format_params(resolved), self._where)

    def to_solution(
        self, definition: Definition, params: Mapping[str, ParamValue] | None = None, name: str | None = None
    ) -> Solution:
        """A Solution of `definition` from this seed at `params` (defaults where omitted).

        One source file `<stem>.py`, entry point `<stem>.py::run`, destination-passing
        style, author "solforge-seed"; the PARAMS literal is rewritten to the resolved
        params and each of the seed's `constants` to the reference's value (e.g. EPS to
        the reference's `eps`). The default name is
        `<definition>__<language>_<stem>__<8 hex digits of the resolved params>`, so each
        parameter point names a distinct solution. Raises ValueError when the seed does
        not apply to `definition` (see `applies_to`), SpecError for params outside the space.
        """
        if not self.applies_to(definition):
            expected = ", ".join((*definition.inputs, *definition.outputs))
            raise ValueError(
                f"seed '{self.name}' (op_type '{self.op_type}', run({', '.join(self.run_args)}), definitions "
                f"{list(self.definitions)}, constants from the reference {sorted(self.constants.values())}) does not "
                f"apply to definition '{definition.name}' (op_type '{definition.op_type}', expects run({expected}))"
            )
        resolved = self.resolve_params(params)
        digest = params_digest(resolved)
        source = _replace_assignment(self.source, "PARAMS", _format_params(resolved), self._where)
        for constant, value in self.constants_for(definition).items():
            source = _replace_assignment(source, constant, repr(value), self._where)
        return Solution(
            name=name or f"{definition.name}__{self.language.value}_{self.stem}__{digest}",
            definition=definition.name,
            author=SEED_AUTHOR,
            description=f"{self.description} Seed {self.name}, family {self.family}, "
            f"parameters {json.dumps(resolved)}.",
            spec=BuildSpec(
                language=self.language,
                target_hardware=list(_TARGET_HARDWARE[self.language]),
                entry_point=f"{self.entry_file}::run",
                dependencies=list(_DEPENDENCIES[self.language]),
                destination_passing_style=True,
            ),
            sources=[SourceFile(path=self.entry_file, content=source)],
        )

    @property
    def _where(self) -> str:
        return _display_path(self.path)


def params_digest(params: Mapping[str, ParamValue]) -> str:
    """8 hex digits of sha256 over the params as sorted JSON: a short, stable name for a point."""
    return hashlib.sha256(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()[:8]


def read_params(source: str) -> dict[str, ParamValue]:
    """The `PARAMS` literal of a seed-derived source (e.g. a Solution's content), read by AST.

    Raises SpecError when the source has no top-level `PARAMS = {...}` dict literal.
    """
    tree = _parse(source, "<source>")
    node = _top_level_assign(tree, "PARAMS")
    if node is None:
        raise SpecError("<source>: PARAMS: expected a top-level dict literal `PARAMS = {...}`")
    return _literal(node.value, "<source>", "PARAMS")


def reference_constants(reference: str) -> dict[str, int | float]:
    """Variables a reference source assigns a single numeric literal, at module level or
    in the top-level body of its `run` (e.g. {"eps": 1e-05, "IGNORE_INDEX": -100}).

    A name assigned twice, or assigned anything but a literal, is left out. Returns {}
    for a source that does not parse.
    """
    try:
        tree = ast.parse(reference)
    except SyntaxError:
        return {}
    run = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
    values: dict[str, list[object]] = {}
    for node in [*tree.body, *(stmt for fn in run for stmt in fn.body)]:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = None
            values.setdefault(node.targets[0].id, []).append(value)
    return {
        name: vals[0]
        for name, vals in values.items()
        if len(vals) == 1 and isinstance(vals[0], (int, float)) and not isinstance(vals[0], bool)
    }


def load_seed(path: str | Path) -> SeedKernel:
    """Read one seed file's metadata (by AST; the file is not imported).

    The language is `SEED["language"]`; under `seeds/<language>/` the folder must agree.
    Raises SpecError, one line naming the file and the field, when the file breaks the
    contract of this module's docstring.
    """
    path = Path(path).resolve()
    where = _display_path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{where}: cannot read ({exc.strerror})") from None
    tree = _parse(source, where)

    meta = _required_literal(tree, "SEED", where)
    if not isinstance(meta, dict):
        raise SpecError(f"{where}: SEED: expected a dict literal")
    for key, typ in _SEED_KEYS.items():
        if not isinstance(meta.get(key), typ):
            raise SpecError(f"{where}: SEED['{key}']: expected a {typ.__name__}")
    for key in ("techniques", "definitions"):
        if not meta[key] or not all(isinstance(t, str) and t for t in meta[key]):
            raise SpecError(f"{where}: SEED['{key}']: expected a non-empty list of strings")
    constants = meta.get("constants", {})
    if not isinstance(constants, dict) or not all(isinstance(v, str) for v in constants.values()):
        raise SpecError(f"{where}: SEED['constants']: expected a dict of seed constant -> reference variable")
    for name in constants:
        node = _top_level_assign(tree, name)
        value = _literal(node.value, where, name) if node is not None else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SpecError(f"{where}: SEED['constants']['{name}']: expected a top-level `{name} = <number>`")
    try:
        language = Language(meta["language"])
    except ValueError:
        language = None
    if language not in SEED_LANGUAGES:
        raise SpecError(f"{where}: SEED['language']: expected one of {[lang.value for lang in SEED_LANGUAGES]}")
    if path.parent.parent == SEEDS_ROOT and path.parent.name != language.value:
        raise SpecError(
            f"{where}: SEED['language']: '{language.value}' but the file is under seeds/{path.parent.name}/"
        )

    params = _required_literal(tree, "PARAMS", where)
    space = _required_literal(tree, "PARAM_SPACE", where)
    if not isinstance(params, dict) or not isinstance(space, dict):
        raise SpecError(f"{where}: PARAMS, PARAM_SPACE: expected dict literals")
    if list(params) != list(space):
        raise SpecError(
            f"{where}: PARAMS: names {list(params)} differ from PARAM_SPACE's {list(space)} (same names, same order)"
        )
    param_space: dict[str, tuple[ParamValue, ...]] = {}
    for key, values in space.items():
        if not isinstance(values, list) or not values or not all(_is_scalar(v) for v in values):
            raise SpecError(f"{where}: PARAM_SPACE['{key}']: expected a non-empty list of int, float, bool or str")
        if len({(type(v), v) for v in values}) != len(values):
            raise SpecError(f"{where}: PARAM_SPACE['{key}']: values repeat")
        if not _in_space(params[key], values):
            raise SpecError(f"{where}: PARAMS['{key}']: default {params[key]!r} is not in PARAM_SPACE {values}")
        param_space[key] = tuple(values)

    run = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"), None)
    if run is None:
        raise SpecError(f"{where}: run: expected a top-level function `run`")
    if run.args.vararg or run.args.kwarg:
        raise SpecError(f"{where}: run: expected named parameters only, no *args or **kwargs")
    run_args = tuple(a.arg for a in (*run.args.posonlyargs, *run.args.args, *run.args.kwonlyargs))

    return SeedKernel(
        name=f"{language.value}/{path.stem}",
        path=path,
        op_type=meta["op_type"],
        family=meta["family"],
        language=language,
        description=meta["description"],
        techniques=tuple(meta["techniques"]),
        definitions=tuple(meta["definitions"]),
        constants=MappingProxyType(dict(constants)),
        params=MappingProxyType(params),
        param_space=MappingProxyType(param_space),
        run_args=run_args,
        docstring=ast.get_docstring(tree) or "",
        source=source,
    )


def load_seeds(language: str | Language | None = None, op_type: str | None = None) -> list[SeedKernel]:
    """The shipped seed kernels, sorted by name, optionally of one language and op type.

    Raises SpecError for a language other than triton or numba, or for a shipped seed
    that breaks the contract (the package's tests rule that out).
    """
    seeds = _shipped_seeds()
    if language is not None:
        lang = _language(language)
        seeds = tuple(s for s in seeds if s.language is lang)
    if op_type is not None:
        seeds = tuple(s for s in seeds if s.op_type == op_type)
    return list(seeds)


def seeds_for(definition: Definition, language: str | Language) -> list[SeedKernel]:
    """The shipped seeds of `language` that implement `definition` (see `SeedKernel.applies_to`),
    sorted by name; empty when none does."""
    return [s for s in load_seeds(language, definition.op_type) if s.applies_to(definition)]


def shipped_seed_paths() -> list[Path]:
    """Every seed file shipped in this package, sorted."""
    return sorted(p for lang in SEED_LANGUAGES for p in (SEEDS_ROOT / lang.value).glob("*.py"))


@functools.cache
def _shipped_seeds() -> tuple[SeedKernel, ...]:
    return tuple(sorted((load_seed(p) for p in shipped_seed_paths()), key=lambda s: s.name))


def _language(language: str | Language) -> Language:
    try:
        lang = Language(language)
    except ValueError:
        lang = None
    if lang not in SEED_LANGUAGES:
        raise SpecError(f"language: '{language}' has no seeds (expected one of {[x.value for x in SEED_LANGUAGES]})")
    return lang


# -- the AST side ----------------------------------------------------------------------


def _parse(source: str, where: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise SpecError(f"{where}: not valid Python (line {exc.lineno}: {exc.msg})") from None


def _top_level_assign(tree: ast.Module, name: str) -> ast.Assign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == name:
                return node
    return None


def _literal(node: ast.expr, where: str, name: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise SpecError(f"{where}: {name}: expected a literal (read with ast.literal_eval)") from None


def _required_literal(tree: ast.Module, name: str, where: str):
    node = _top_level_assign(tree, name)
    if node is None:
        raise SpecError(f"{where}: {name}: expected a top-level assignment `{name} = {{...}}`")
    return _literal(node.value, where, name)


def _format_params(params: Mapping[str, ParamValue]) -> str:
    """A PARAMS dict literal, one entry per line, as the seed files write it."""
    return "{\n" + "".join(f"    {json.dumps(k)}: {_format_value(v)},\n" for k, v in params.items()) + "}"


def _replace_assignment(source: str, name: str, text: str, where: str) -> str:
    """`source` with the value of its top-level `name = ...` replaced by `text`; the rest
    is unchanged byte for byte. AST offsets are UTF-8 byte columns: the splice is on bytes."""
    node = _top_level_assign(_parse(source, where), name)
    if node is None:
        raise SpecError(f"{where}: {name}: expected a top-level assignment `{name} = ...`")
    value = node.value
    data = source.encode("utf-8")
    line_starts = [0]
    for line in data.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    start = line_starts[value.lineno - 1] + value.col_offset
    end = line_starts[value.end_lineno - 1] + value.end_col_offset
    return (data[:start] + text.encode("utf-8") + data[end:]).decode("utf-8")


def _format_value(value: ParamValue) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _is_scalar(value: object) -> bool:
    return isinstance(value, (bool, int, float, str))


def _in_space(value: object, space) -> bool:
    # `True == 1` in Python; a bool parameter must not accept 1, nor an int one True
    return _is_scalar(value) and any(type(v) is type(value) and v == value for v in space)


def _display_path(path: Path) -> str:
    """`seeds/<language>/<file>` for shipped seeds, the path itself otherwise."""
    try:
        return str(path.relative_to(SEEDS_ROOT.parent))
    except ValueError:
        return str(path)
