"""Building: the CUDA C++ signature parser, Python entry points, solution_from_py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from solforge.bench.build import (
    BuildError,
    build_solution,
    compile_solution,
    eager_solution,
    solution_from_py,
    unload,
)
from solforge.bench.languages.cuda import parse_cuda_signature
from solforge.spec import BuildSpec, Solution, SourceFile, SpecError, load_definition

KERNELS = Path(__file__).parent / "kernels"
DEFN = load_definition(KERNELS / "rmsnorm_small.json")


def test_signature_of_a_host_function_in_declaration_order():
    sig = parse_cuda_signature((KERNELS / "honest_rmsnorm.cu").read_text(), "run")
    assert sig.return_type == "torch::Tensor"
    assert sig.params == [("const torch::Tensor&", "x"), ("const torch::Tensor&", "w")]
    assert sig.declaration("run") == "torch::Tensor run(const torch::Tensor& x, const torch::Tensor& w);"


def test_signature_parser_skips_calls_comments_and_templates_in_arguments():
    src = """
    // torch::Tensor fused(int not_this);
    #include <torch/extension.h>
    static void helper() { fused_like(); }
    std::vector<torch::Tensor> fused(torch::Tensor a, std::tuple<int64_t, double> cfg,
                                     c10::optional<torch::Tensor> bias = c10::nullopt,
                                     double eps=1e-6) {
        return {a};
    }
    """
    sig = parse_cuda_signature(src, "fused")
    assert sig.return_type == "std::vector<torch::Tensor>"
    assert [n for _, n in sig.params] == ["a", "cfg", "bias", "eps"]
    assert sig.params[1] == ("std::tuple<int64_t, double>", "cfg")


@pytest.mark.parametrize("src, message", [
    ("__global__ void run(float* x) { }", "is a CUDA kernel"),
    ("torch::Tensor other(torch::Tensor x) { return x; }", "no top-level definition of host function 'run'"),
    ("torch::Tensor run(torch::Tensor x);", "no top-level definition"),
    ("namespace k { torch::Tensor run(torch::Tensor x) { return x; } }", "no top-level definition"),
    ("template <typename T>\nT run(T x) { return x; }", "is a template"),
])
def test_signature_parser_refuses_what_cannot_be_bound(src, message):
    with pytest.raises(BuildError, match=message):
        parse_cuda_signature(src, "run", "k.cu")


def test_a_cu_entry_whose_parameters_do_not_match_the_definition_does_not_build(tmp_path):
    src = (KERNELS / "honest_rmsnorm.cu").read_text().replace("const torch::Tensor& w)", "const torch::Tensor& weight)")
    sol = Solution(name="k", definition=DEFN.name, spec=BuildSpec(language="cuda", entry_point="k.cu::run", destination_passing_style=False),
                   sources=[SourceFile(path="k.cu", content=src)])
    with pytest.raises(BuildError, match=r"run\(x, weight\) in k.cu does not match the definition's arguments \(x, w\)"):
        build_solution(sol, DEFN, tmp_path, "cpu", 60)


def test_python_entry_builds_and_unloads(tmp_path):
    sol = Solution(name="two_files", definition=DEFN.name, spec=BuildSpec(language="pytorch", entry_point="main.py::run", destination_passing_style=False),
                   sources=[SourceFile(path="main.py", content="from helper_mod_xyz import scale\n\n"
                                                              "def run(x, w):\n    return scale(x) * w\n"),
                            SourceFile(path="helper_mod_xyz.py", content="def scale(x):\n    return 2 * x\n")])
    built = build_solution(sol, DEFN, tmp_path, "cpu", 60)
    try:
        assert built.fn(x=3, w=5) == 30
        assert "helper_mod_xyz" in sys.modules and str(tmp_path) in sys.path
        assert {ns["__name__"] for ns in built.namespaces} >= {"helper_mod_xyz"}
    finally:
        unload(built)
    assert "helper_mod_xyz" not in sys.modules and str(tmp_path) not in sys.path


@pytest.mark.parametrize("content, message", [
    ("def run(x, w):\n    return x +\n", r"bad_entry.py: not valid Python \(line 2"),
    ("raise ImportError('no such library')\ndef run(x, w):\n    return x\n", "ImportError: no such library"),
])
def test_a_python_entry_that_fails_to_import_is_a_build_error(tmp_path, content, message):
    sol = Solution(name="bad", definition=DEFN.name, spec=BuildSpec(language="pytorch", entry_point="bad_entry.py::run", destination_passing_style=False),
                   sources=[SourceFile(path="bad_entry.py", content=content)])
    with pytest.raises(BuildError, match=message):
        build_solution(sol, DEFN, tmp_path, "cpu", 60)
    assert "bad_entry" not in sys.modules


def test_sources_may_not_escape_the_working_directory(tmp_path):
    sol = Solution(name="escape", definition=DEFN.name, spec=BuildSpec(language="pytorch", entry_point="main.py::run", destination_passing_style=False),
                   sources=[SourceFile(path="main.py", content="def run(x, w):\n    return x\n"),
                            SourceFile(path="../evil.py", content="")])
    with pytest.raises(BuildError, match="must be relative"):
        build_solution(sol, DEFN, tmp_path / "work", "cpu", 60)


def test_solution_from_py(tmp_path):
    sol = solution_from_py(KERNELS / "honest_rmsnorm.py", DEFN)
    assert sol.name == "honest_rmsnorm" and sol.spec.entry_point == "honest_rmsnorm.py::run"
    assert not sol.spec.destination_passing_style and sol.spec.language.value == "pytorch"
    assert solution_from_py(KERNELS / "honest_rmsnorm_triton.py", DEFN, "triton").spec.language.value == "triton"
    with pytest.raises(SpecError, match="no such file"):
        solution_from_py(tmp_path / "missing.py", DEFN)
    (tmp_path / "norun.py").write_text("def main(x, w):\n    return x\n")
    with pytest.raises(SpecError, match="no top-level function 'run'"):
        solution_from_py(tmp_path / "norun.py", DEFN)
    (tmp_path / "wrongsig.py").write_text("def run(x, weight):\n    return x\n")
    with pytest.raises(SpecError, match=r"run\(x, weight\) does not match"):
        solution_from_py(tmp_path / "wrongsig.py", DEFN)
    with pytest.raises(SpecError, match="language"):
        solution_from_py(KERNELS / "honest_rmsnorm.py", DEFN, "fortran")


def test_baselines_are_the_reference_as_solutions():
    eager, compiled = eager_solution(DEFN), compile_solution(DEFN)
    assert eager.name == "eager" and eager.entry_source.content == DEFN.reference
    assert compiled.source("reference.py").content == DEFN.reference
    assert "torch.compile(_reference_run)" in compiled.entry_source.content


def test_unload_keeps_the_libraries_a_solution_imported_first(tmp_path):
    sys.modules.pop("colorsys", None)  # a small stdlib module nothing here has imported
    sol = Solution(name="lib_user", definition=DEFN.name, spec=BuildSpec(language="pytorch", entry_point="lib_user.py::run", destination_passing_style=False),
                   sources=[SourceFile(path="lib_user.py", content="import colorsys\n\ndef run(x, w):\n    return x\n")])
    built = build_solution(sol, DEFN, tmp_path, "cpu", 60)
    assert built.modules == ["lib_user"]
    unload(built)
    assert "colorsys" in sys.modules and "lib_user" not in sys.modules
