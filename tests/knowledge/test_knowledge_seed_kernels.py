"""Seed kernels as data: metadata read by AST, parameter spaces, applicability to
definitions, PARAMS rewriting, and the Solutions made from seeds."""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path

import pytest

from solforge.knowledge import (
    SEED_AUTHOR,
    SeedKernel,
    load_seed,
    load_seeds,
    read_params,
    reference_constants,
    seeds_for,
    shipped_seed_paths,
)
from solforge.problems import load_builtin
from solforge.spec import Definition, Language, SpecError, check_solution

# The built-in definitions the seeds are written for, and how many seeds of each
# language must implement them (the engine's `seed` operator needs alternatives).
EXPECTED_SEEDS = {
    "rmsnorm_h4096": {"triton": 2, "numba": 2},
    "fused_add_rmsnorm_h4096": {"triton": 2, "numba": 2},
    "softmax_v128256": {"triton": 3, "numba": 1},
    "silu_and_mul_i14336": {"triton": 1, "numba": 1},
    "rope_neox_h32_kv8_d128": {"triton": 1, "numba": 1},
    "gemm_bf16_llama31_8b": {"triton": 3, "numba": 0},
}
# Op types without a built-in definition yet: their seeds are written against these signatures.
NATURAL_SIGNATURES = {
    "layernorm": ("hidden_states", "weight", "bias", "output"),
    "cross_entropy": ("logits", "labels", "loss"),
}

SEEDS = load_seeds()


def _seed(name: str) -> SeedKernel:
    return next(s for s in SEEDS if s.name == name)


def test_every_shipped_seed_loads_with_complete_metadata():
    assert len(SEEDS) == len(shipped_seed_paths()) >= 20
    assert len({s.name for s in SEEDS}) == len(SEEDS)
    for seed in SEEDS:
        assert seed.language in (Language.triton, Language.numba)
        assert seed.path.parent.name == seed.language.value
        assert seed.op_type and seed.family and seed.techniques, seed.name
        assert len(seed.description) > 20 and len(seed.docstring) > 200, seed.name
        assert seed.run_args, seed.name


def test_params_lie_in_their_declared_space():
    for seed in SEEDS:
        assert list(seed.params) == list(seed.param_space), seed.name
        for key, value in seed.params.items():
            allowed = seed.param_space[key]
            assert len(allowed) >= 2, f"{seed.name}: {key} has nothing to tune"
            assert any(type(v) is type(value) and v == value for v in allowed), f"{seed.name}: {key}={value!r}"


def test_shared_seed_metadata_is_read_only():
    seed = load_seeds("numba")[0]
    with pytest.raises(TypeError):
        seed.params["PARALLEL"] = True
    with pytest.raises(TypeError):
        seed.param_space["PARALLEL"] = (True,)
    assert load_seeds("numba")[0].params == seed.params


def test_metadata_is_read_without_importing_triton_or_numba():
    before = {m for m in sys.modules if m.split(".")[0] in ("triton", "numba")}
    for path in shipped_seed_paths():
        load_seed(path)
    after = {m for m in sys.modules if m.split(".")[0] in ("triton", "numba")}
    assert after == before


def test_seed_sources_use_only_declared_parameters():
    # every PARAMS["X"] the source reads is a declared parameter, and every declared one is read
    for seed in SEEDS:
        tree = ast.parse(seed.source)
        used = {
            node.slice.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "PARAMS"
            and isinstance(node.slice, ast.Constant)
        }
        assert used == set(seed.param_space), seed.name


@pytest.mark.parametrize("name", sorted(EXPECTED_SEEDS))
def test_seeds_for_finds_the_seeds_of_each_builtin_definition(name):
    definition, _ = load_builtin(name)
    for language, count in EXPECTED_SEEDS[name].items():
        found = seeds_for(definition, language)
        assert len(found) == count, (name, language, [s.name for s in found])
        for seed in found:
            assert seed.language.value == language
            assert seed.run_args == (*definition.inputs, *definition.outputs)
    triton_families = {s.family for s in seeds_for(definition, "triton")}
    assert len(triton_families) == EXPECTED_SEEDS[name]["triton"], "families must differ within an op"


def test_seeds_for_rejects_a_mismatched_signature():
    rmsnorm, _ = load_builtin("rmsnorm_h4096")
    fused, _ = load_builtin("fused_add_rmsnorm_h4096")
    # same op_type, other signature: the plain RMSNorm seeds must not apply to the fused op
    assert rmsnorm.op_type == fused.op_type
    plain = {s.name for s in seeds_for(rmsnorm, "triton")}
    assert plain and plain.isdisjoint(s.name for s in seeds_for(fused, "triton"))
    renamed = rmsnorm.model_copy(deep=True)
    renamed.inputs = {"x" if k == "hidden_states" else k: v for k, v in renamed.inputs.items()}
    assert seeds_for(renamed, "triton") == []
    reordered = rmsnorm.model_copy(deep=True)
    reordered.inputs = dict(reversed(list(reordered.inputs.items())))
    assert seeds_for(reordered, "numba") == []
    other_op = rmsnorm.model_copy(deep=True)
    other_op.op_type = "layernorm"
    assert seeds_for(other_op, "triton") == []


def test_seeds_without_builtin_definitions_follow_their_natural_signature():
    for op_type, signature in NATURAL_SIGNATURES.items():
        for language in ("triton", "numba"):
            found = load_seeds(language, op_type)
            assert found, (op_type, language)
            assert all(s.run_args == signature for s in found)


def test_load_seeds_filters_and_rejects_unknown_languages():
    assert {s.language for s in load_seeds("numba")} == {Language.numba}
    assert {s.op_type for s in load_seeds(op_type="softmax")} == {"softmax"}
    assert load_seeds("triton", "no_such_op") == []
    with pytest.raises(SpecError, match="language"):
        load_seeds("cuda")


def test_with_params_rewrites_only_the_params_literal():
    seed = _seed("triton/gemm_tiled")
    new = {"BLOCK_M": 64, "GROUP_M": 1, "num_stages": 5}
    source = seed.with_params(new)
    assert read_params(source) == {**seed.params, **new}
    assert list(read_params(source)) == list(seed.param_space)
    # everything outside the literal is byte-identical
    head = seed.source[: seed.source.index("PARAMS = {")]
    tail = seed.source[seed.source.index("PARAM_SPACE = {") :]
    assert source.startswith(head) and source.endswith(tail)
    assert seed.with_params() == seed.with_params(seed.params)
    assert read_params(seed.with_params()) == seed.params
    compile(source, seed.entry_file, "exec")


def test_with_params_rejects_values_outside_the_space():
    seed = _seed("numba/rmsnorm_rows")
    with pytest.raises(ValueError, match="ROWS_PER_CHUNK"):
        seed.with_params({"ROWS_PER_CHUNK": 3})
    with pytest.raises(ValueError, match="NO_SUCH_PARAM"):
        seed.with_params({"NO_SUCH_PARAM": 1})
    # a bool parameter does not take 1, nor an int parameter True (True == 1 in Python)
    with pytest.raises(ValueError, match="PARALLEL"):
        seed.with_params({"PARALLEL": 1})
    with pytest.raises(ValueError, match="ACCUMULATORS"):
        seed.with_params({"ACCUMULATORS": True})
    with pytest.raises(ValueError, match="ACCUMULATORS"):
        seed.with_params({"ACCUMULATORS": 4.0})


def test_every_point_of_a_small_space_rewrites_to_itself():
    seed = _seed("numba/softmax_split_row")
    names = list(seed.param_space)
    for values in itertools.product(*seed.param_space.values()):
        point = dict(zip(names, values))
        assert read_params(seed.with_params(point)) == point


def test_to_solution_makes_a_valid_destination_passing_solution():
    definition, _ = load_builtin("rmsnorm_h4096")
    for seed in seeds_for(definition, "triton") + seeds_for(definition, "numba"):
        solution = seed.to_solution(definition)
        assert check_solution(definition, solution) == []
        assert solution.definition == definition.name
        assert solution.author == SEED_AUTHOR
        assert solution.spec.language is seed.language
        assert solution.spec.destination_passing_style is True
        assert solution.spec.entry_point == f"{seed.stem}.py::run"
        assert read_params(solution.entry_source.content) == seed.params
        assert reference_constants(solution.entry_source.content)["EPS"] == 1e-5


def _with_reference(definition: Definition, reference: str, name: str | None = None) -> Definition:
    return definition.model_copy(update={"reference": reference, "name": name or definition.name}, deep=True)


def test_constants_come_from_the_definitions_reference():
    definition, _ = load_builtin("rmsnorm_h4096")
    assert reference_constants(definition.reference)["eps"] == 1e-5
    qwen = _with_reference(definition, definition.reference.replace("eps = 1e-5", "eps = 1e-6"))
    for seed in seeds_for(qwen, "triton") + seeds_for(qwen, "numba"):
        source = seed.to_solution(qwen).entry_source.content
        assert reference_constants(source)["EPS"] == 1e-6
        compile(source, seed.entry_file, "exec")
    assert len(seeds_for(qwen, "triton")) == 2
    # a reference without the constant, or with two values for it, gets no seed
    no_eps = _with_reference(definition, definition.reference.replace("eps = 1e-5", "eps = float('1e-5')"))
    assert seeds_for(no_eps, "triton") == [] and seeds_for(no_eps, "numba") == []
    twice = _with_reference(definition, definition.reference.replace("eps = 1e-5", "eps = 1e-5\n    eps = 1e-6"))
    assert seeds_for(twice, "triton") == []
    with pytest.raises(ValueError, match="does not apply"):
        _seed("triton/rmsnorm_row").to_solution(no_eps)


def test_reference_constants_reads_module_and_run_literals_only():
    source = (
        "IGNORE_INDEX = -100\nT_BLOCK = 1024\nNAME = 'x'\n\n"
        "def run(x):\n    eps = 1e-6\n    scale = x.shape[0]\n    def inner():\n        hidden = 3\n    return x\n"
    )
    assert reference_constants(source) == {"IGNORE_INDEX": -100, "T_BLOCK": 1024, "eps": 1e-6}
    assert reference_constants("def run(:") == {}


def test_definition_names_outside_a_seeds_patterns_get_no_seed():
    # same op_type and signature, other semantics: Gemma's x * (1 + weight), GELU instead of SiLU
    rmsnorm, _ = load_builtin("rmsnorm_h4096")
    silu, _ = load_builtin("silu_and_mul_i14336")
    gemma = rmsnorm.model_copy(update={"name": "gemma_rmsnorm_h3584"}, deep=True)
    gelu = silu.model_copy(update={"name": "gelu_tanh_and_mul_i14336"}, deep=True)
    for definition in (gemma, gelu):
        assert seeds_for(definition, "triton") == [] and seeds_for(definition, "numba") == []
    other_size = rmsnorm.model_copy(update={"name": "rmsnorm_h8192"}, deep=True)
    assert len(seeds_for(other_size, "triton")) == 2


def test_to_solution_names_each_parameter_point_apart():
    definition, _ = load_builtin("softmax_v128256")
    seed = _seed("triton/softmax_online")
    a = seed.to_solution(definition)
    b = seed.to_solution(definition, {"BLOCK_SIZE": 4096})
    assert a.name != b.name
    assert a.name == seed.to_solution(definition, dict(seed.params)).name  # defaults spelled out: same point
    assert read_params(b.entry_source.content)["BLOCK_SIZE"] == 4096
    assert seed.to_solution(definition, name="mine").name == "mine"
    with pytest.raises(ValueError, match="BLOCK_SIZE"):
        seed.to_solution(definition, {"BLOCK_SIZE": 3000})


def test_to_solution_refuses_a_definition_the_seed_does_not_implement():
    gemm, _ = load_builtin("gemm_bf16_llama31_8b")
    with pytest.raises(ValueError, match="does not apply"):
        _seed("triton/rmsnorm_row").to_solution(gemm)


def _write_seed(tmp_path: Path, seed: str, params: str, space: str, run: str = "def run(x, y):\n    pass\n") -> Path:
    path = tmp_path / "bad_seed.py"
    path.write_text(f'"""A seed."""\n\nSEED = {seed}\nPARAMS = {params}\nPARAM_SPACE = {space}\n\n\n{run}')
    return path


GOOD_META = (
    '{"op_type": "x", "family": "f", "language": "numba", "description": "d", "techniques": ["t"], '
    '"definitions": ["x_*"]}'
)


def test_a_user_seed_file_loads(tmp_path):
    seed = load_seed(_write_seed(tmp_path, GOOD_META, '{"A": 1}', '{"A": [1, 2]}'))
    assert seed.params == {"A": 1} and seed.param_space == {"A": (1, 2)} and seed.run_args == ("x", "y")
    assert seed.definitions == ("x_*",) and seed.constants == {}


@pytest.mark.parametrize(
    "meta, params, space, run, field",
    [
        (GOOD_META, '{"A": 3}', '{"A": [1, 2]}', None, "PARAMS['A']"),
        (GOOD_META, '{"A": 1}', '{"B": [1, 2]}', None, "PARAMS"),
        (GOOD_META, '{"A": 1}', '{"A": []}', None, "PARAM_SPACE['A']"),
        (GOOD_META, '{"A": 1}', '{"A": [1, 1]}', None, "PARAM_SPACE['A']"),
        (GOOD_META, '{"A": 1}', '{"A": [1, 2]}', "def go(x):\n    pass\n", "run"),
        (GOOD_META, '{"A": 1}', '{"A": [1, 2]}', "def run(*args):\n    pass\n", "run"),
        (GOOD_META, '{"A": 1 + int("2")}', '{"A": [1, 2]}', None, "PARAMS"),
        (GOOD_META.replace('"numba"', '"cuda"'), '{"A": 1}', '{"A": [1, 2]}', None, "SEED['language']"),
        (GOOD_META.replace('"family": "f", ', ""), '{"A": 1}', '{"A": [1, 2]}', None, "SEED['family']"),
        (GOOD_META.replace('["x_*"]', "[]"), '{"A": 1}', '{"A": [1, 2]}', None, "SEED['definitions']"),
        (GOOD_META[:-1] + ', "constants": {"EPS": "eps"}}', '{"A": 1}', '{"A": [1, 2]}', None, "SEED['constants']"),
    ],
)
def test_a_malformed_seed_file_is_one_line_naming_the_field(tmp_path, meta, params, space, run, field):
    path = _write_seed(tmp_path, meta, params, space, *(run,) if run else ())
    with pytest.raises(SpecError) as info:
        load_seed(path)
    message = str(info.value)
    assert "\n" not in message and "bad_seed.py" in message and field in message


def test_a_definition_built_for_layernorm_finds_its_seeds():
    definition = Definition.model_validate(
        {
            "name": "layernorm_h64",
            "op_type": "layernorm",
            "axes": {"T": {"type": "var"}, "H": {"type": "const", "value": 64}},
            "inputs": {
                "hidden_states": {"shape": ["T", "H"], "dtype": "bfloat16"},
                "weight": {"shape": ["H"], "dtype": "bfloat16"},
                "bias": {"shape": ["H"], "dtype": "bfloat16"},
            },
            "outputs": {"output": {"shape": ["T", "H"], "dtype": "bfloat16"}},
            "reference": "def run(hidden_states, weight, bias):\n    eps = 1e-12\n    return hidden_states\n",
        }
    )
    assert {s.family for s in seeds_for(definition, "triton")} == {"row_in_registers", "looped_welford"}
    assert [s.name for s in seeds_for(definition, Language.numba)] == ["numba/layernorm_rows"]
    source = seeds_for(definition, "triton")[0].to_solution(definition).entry_source.content
    assert reference_constants(source)["EPS"] == 1e-12
