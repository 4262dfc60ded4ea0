"""The static guard at the edges its first tests left open: attribute names built by
`%`, `str.format` and `str.join` resolve to the very name (not to the fallback finding of
a dynamic lookup) and only when every piece is a constant; a from-import is judged where
it stands, a relative one never; the entry point is judged at module level only, after
any number of functions and lambdas; immutable defaults are not a cache; names are
judged where they are read, once; a name the guard cannot look up is never imported.

Written against the mutants of `benchmarks/mutation.py` that the first tests let
through; each test states a rule of the guard's contract, not a line of its code.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_guards_static import SDPA, findings

DYNAMIC = f"forbidden call {SDPA} at main.py:3 (dynamic attribute lookup on torch.nn.functional could reach it)"
RESOLVED = [("forbidden-call", f"forbidden call {SDPA} at main.py:3")]


def lookup(expr: str) -> list[tuple[str, str]]:
    """The findings of `getattr(F, <expr>)(q, q, q)` on line 3, with `name` a parameter."""
    return findings(f"import torch.nn.functional as F\ndef run(q, name):\n    return getattr(F, {expr})(q, q, q)\n", SDPA)


# -- attribute names built from constants --------------------------------------------------


@pytest.mark.parametrize("expr", [
    "'scaled_dot_%s_attention' % 'product'",
    "'scaled_%s_%s_attention' % ('dot', 'product')",
    "'{}_dot_product_attention'.format('scaled')",
    "'{}_{}_product_attention'.format('scaled', 'dot')",
    "'_'.join(['scaled', 'dot', 'product', 'attention'])",
    "'_'.join(('scaled', 'dot', 'product', 'attention'))",
    "f'scaled_dot_{\"product\"}_attention'",
    "'noitnetta_tcudorp_tod_delacs'[::-1]",
    "'xscaled_dot_product_attention'[1:]",
    "'scaled_dot_product_attentionxx'[:-2]",
])
def test_a_name_built_from_constants_resolves_to_the_forbidden_name_itself(expr):
    # Resolved: one finding naming the call, not the "could reach it" of a lookup the
    # guard could not evaluate.
    assert lookup(expr) == RESOLVED


@pytest.mark.parametrize("expr", [
    "'scaled_dot_%s_attention' % name",
    "'scaled_%s_%s_attention' % ('dot', name)",
    "'{}_dot_product_attention'.format(name)",
    "'{s}_dot_product_attention'.format(s='scaled')",
    "'_'.join(['scaled', name, 'product', 'attention'])",
    "name.join(['scaled', 'dot', 'product', 'attention'])",
    "f'scaled_dot_{name}_attention'",
    "name[::-1]",
    "'scaled_dot_product_' + name",
    "name + '_attention'",
    "'xscaled_dot_product_attention'[len(name):]",
])
def test_a_name_built_from_anything_but_constants_is_a_dynamic_lookup(expr):
    # A piece the guard cannot evaluate makes the whole name unknown: never a guess with
    # the piece left out or printed as None.
    assert lookup(expr) == [("forbidden-call", DYNAMIC)]


@pytest.mark.parametrize("callee", [
    "__import__('torch.nn.functional', None, None, ['x']).scaled_dot_product_attention",
    "__import__('torch.nn.functional', fromlist=['x']).scaled_dot_product_attention",
    "__import__('torch.nn.functional').nn.functional.scaled_dot_product_attention",
    "(G := torch.nn.functional).scaled_dot_product_attention",
    "F.scaled_dot_product_attention.__call__",
])
def test_other_spellings_of_the_callee_resolve_to_one_finding_of_the_forbidden_name(callee):
    code = f"import torch\nimport torch.nn.functional as F\ndef run(q):\n    return {callee}(q, q, q)\n"
    assert findings(code, SDPA) == [("forbidden-call", f"forbidden call {SDPA} at main.py:4")]


def test_a_call_that_is_not_getattr_looks_up_no_attribute():
    # A builder handed the module and a name is the solution's own function (judged where
    # it is defined), not a lookup of that name.
    code = ("import torch.nn.functional as F\ndef run(q):\n"
            "    attention = make_kernel(F, 'scaled_dot_product_attention')\n    return attention(q)\n")
    assert findings(code, SDPA) == []


def test_a_name_bound_to_a_constant_string_stands_for_that_string():
    code = ("import torch.nn.functional as F\nNAME = 'scaled_dot_product_attention'\nN = 3\n"
            "def run(q):\n    return getattr(F, NAME)(q, q, q)\n")
    assert findings(code, SDPA) == [("forbidden-call", f"forbidden call {SDPA} at main.py:5")]


def test_strings_the_guard_cannot_evaluate_are_left_alone():
    code = ("import torch\ndef run(x, sep, fmt):\n    label = sep.join(['rms', 'norm'])\n"
            "    other = fmt % 'x'\n    last = fmt.format('y')\n    return x\n")
    assert findings(code, SDPA) == []


# -- imports ---------------------------------------------------------------------------------


def test_a_from_import_of_a_forbidden_function_is_judged_where_it_stands():
    code = "from torch.nn.functional import scaled_dot_product_attention\n"
    assert findings(code, SDPA) == [("forbidden-call", f"forbidden call {SDPA} at main.py:1 (referenced without a call)")]


def test_a_relative_import_names_the_solution_s_own_module_not_torch():
    code = ("from .torch.nn.functional import scaled_dot_product_attention as sdpa\n"
            "from . import torch\ndef run(q):\n    return sdpa(q, q, q)\n")
    assert findings(code, SDPA) == []


# -- the entry point -------------------------------------------------------------------------


@pytest.mark.parametrize("before", [
    "def helper(x):\n    return x\n",
    "def helper(x):\n    def inner(y):\n        return y\n    return inner(x)\n",
    "square = lambda x: x * x\n",
    "pick = lambda x: (lambda y: y)(x)\n",
    "async def fetch(x):\n    return x\n",
])
def test_a_cached_entry_point_is_caught_after_other_functions_and_lambdas(before):
    code = f"import functools\n{before}@functools.lru_cache\ndef run(x):\n    return x\n"
    got = findings(code)
    assert [g for g, _ in got] == ["caching"], got
    assert got[0][1].startswith("caching results across calls: functools.lru_cache on the entry point run at main.py:")


def test_a_cached_helper_bound_at_module_level_is_not_the_entry_point():
    code = ("import functools\ndef _impl(n):\n    return n\nblock = functools.lru_cache(_impl)\n"
            "low, high = divmod(7, 2)\nconfig.size = int('4')\ndef run(x):\n    return x * block(4)\n")
    assert findings(code) == []


def test_a_nested_function_named_like_the_entry_point_is_not_the_entry_point():
    code = ("import functools\ndef run(x):\n    @functools.lru_cache\n    def run(n):\n        return n\n"
            "    return run(x)\n")
    assert findings(code) == []


def test_immutable_defaults_of_the_entry_point_are_not_a_cache():
    code = "def run(x, eps=1e-6, axis=-1, name='rms', shape=tuple(), *, scale=float('1.0')):\n    return x\n"
    assert findings(code) == []
    mutable = "def run(x, eps=1e-6, seen=list()):\n    return x\n"
    assert [g for g, _ in findings(mutable)] == ["caching"]
    keyword_only = "def run(x, *, scale, seen={}):\n    return x\n"
    assert findings(keyword_only) == [
        ("caching", "caching results across calls: mutable default argument of the entry point run at main.py:1")]


# -- names judged where they are read ----------------------------------------------------------


def test_calling_what_a_call_returned_is_honest():
    code = ("import torch\ndef _build():\n    return lambda x: x * 2\n"
            "def run(x):\n    return _build()(x) + torch.compile(abs)(x)\n")
    assert findings(code, SDPA) == []


def test_a_forbidden_tensor_method_read_without_a_call_is_its_method_form():
    # `x.softmax` read (not called) on a value the guard cannot name; torch.softmax and
    # other attributes are not the method.
    code = "import torch\ndef run(x):\n    f = torch.softmax\n    g = x.softmax\n    return g(x.shape[-1])\n"
    assert findings(code, "torch.Tensor.softmax") == [
        ("forbidden-call", "forbidden call torch.Tensor.softmax at main.py:4 (method form)")]


def test_handing_the_module_to_a_helper_is_no_dynamic_lookup():
    code = "import torch.nn.functional as F\ndef run(q, name):\n    return helper(F, name)(q)\n"
    assert findings(code, SDPA) == []


def test_a_forbidden_name_is_reported_where_it_is_reached_not_where_it_is_rebound():
    code = ("from torch.nn.functional import scaled_dot_product_attention as sdpa\n"
            "sdpa = None\ndel sdpa\n")
    assert findings(code, SDPA) == [("forbidden-call", f"forbidden call {SDPA} at main.py:1 (referenced without a call)")]


def test_a_forbidden_name_read_without_a_call_is_reported_at_each_read():
    code = ("from torch.nn.functional import scaled_dot_product_attention as sdpa\n"
            "def run(q):\n    table = {'attention': sdpa}\n    return table['attention'](q, q, q)\n")
    assert findings(code, SDPA) == [
        ("forbidden-call", f"forbidden call {SDPA} at main.py:1 (referenced without a call)"),
        ("forbidden-call", f"forbidden call {SDPA} at main.py:3 (referenced without a call)")]


def test_a_namespace_entry_is_a_reference_when_read_and_a_write_when_written():
    code = ("import torch.nn.functional as F\ndef run(q, mine):\n"
            "    found = vars(F)['scaled_dot_product_attention']\n"
            "    vars(F)['scaled_dot_product_attention'] = mine\n    return q\n")
    assert findings(code, SDPA) == [
        ("forbidden-call", f"forbidden call {SDPA} at main.py:3 (referenced without a call)"),
        ("harness-tamper", f"harness tamper: assignment to {SDPA} at main.py:4")]
    attribute = "import torch.nn.functional as F\ndef run(q, mine):\n    F.scaled_dot_product_attention = mine\n"
    assert findings(attribute, SDPA) == [("harness-tamper", f"harness tamper: assignment to {SDPA} at main.py:3")]
    method = "def run(x, mine):\n    x.softmax = mine\n    del x.softmax\n    return x\n"
    assert findings(method, "torch.Tensor.softmax") == []


@pytest.mark.parametrize("line, forbidden", [
    ("import flashinfer.norm as fn", "flashinfer.norm"),
    ("import torch.nn.functional as F; attention = F.scaled_dot_product_attention", SDPA),
    ("import torch.nn.functional as F; attention = getattr(F, 'scaled_dot_product_attention')", SDPA),
])
def test_a_forbidden_name_reached_without_a_call_says_so(line, forbidden):
    assert findings(f"{line}\n", forbidden) == [
        ("forbidden-call", f"forbidden call {forbidden} at main.py:1 (referenced without a call)")]


def test_a_string_handed_to_anything_but_exec_eval_or_compile_is_not_code():
    code = ("import torch\nimport logging\ndef run(q):\n"
            "    logging.info('torch.nn.functional.scaled_dot_product_attention')\n"
            "    print('torch.nn.functional.scaled_dot_product_attention(q, q, q)')\n    return q\n")
    assert findings(code, SDPA) == []
    executed = code.replace("print(", "exec(")
    assert findings(executed, SDPA) == [("forbidden-call", f"forbidden call {SDPA} at main.py:5")]


def test_registering_a_kernel_for_a_torch_op_names_the_op():
    code = ("import torch\nlib = torch.library.Library('aten', 'IMPL')\n"
            "@torch.library.impl('aten::mul.Tensor', 'CPU')\ndef mul(a, b):\n    return a\n")
    assert findings(code) == [
        ("harness-tamper", "harness tamper: registers a kernel for the torch op aten, which the reference also runs, "
                           "at main.py:2"),
        ("harness-tamper", "harness tamper: registers a kernel for the torch op aten::mul.Tensor, which the reference "
                           "also runs, at main.py:3")]


# -- looking names up ----------------------------------------------------------------------------


def test_a_name_of_a_module_not_imported_is_never_imported_to_compare_it():
    # tabnanny: a standard module nothing here imports. Comparing objects must not import
    # what a solution names (its import could run anything).
    assert "tabnanny" not in sys.modules
    code = "import tabnanny\ndef run(x):\n    return tabnanny.check(x)\n"
    assert findings(code, "tabnanny.process_tokens") == []
    assert findings("import no_such_module_anywhere\nno_such_module_anywhere.g(1)\n",
                    "no_such_module_anywhere.f") == []
    assert "tabnanny" not in sys.modules


def test_a_module_that_is_not_imported_is_not_looked_up_as_torch():
    # Its attributes happen to spell torch's; it is still not torch.
    code = "import fake_torch_xyz\ndef run(q):\n    return fake_torch_xyz._C._nn.scaled_dot_product_attention(q, q, q)\n"
    assert findings(code, "fake_torch_xyz.nn.functional.scaled_dot_product_attention") == []


def test_the_same_object_is_found_in_a_process_that_has_not_imported_torch():
    # The guard may run where torch is not imported yet: it imports torch (and only
    # torch) to compare objects. A fresh interpreter, since this one has torch loaded.
    script = (
        "import sys\n"
        "from solforge.bench.guards.static import static_findings\n"
        "from solforge.problems import load_builtin\n"
        "from solforge.spec import Solution\n"
        "assert 'torch' not in sys.modules, 'the case cannot arise'\n"
        "definition, _ = load_builtin('rmsnorm_h4096')\n"
        "code = 'import torch\\ndef run(x, w):\\n    return torch._C._VariableFunctions.rms_norm(x, (4096,), w)\\n'\n"
        "solution = Solution.model_validate({'name': 's', 'definition': definition.name, 'spec': {'language': 'pytorch',"
        " 'entry_point': 'main.py::run', 'destination_passing_style': False},"
        " 'sources': [{'path': 'main.py', 'content': code}]})\n"
        "for f in static_findings(solution, definition):\n"
        "    print(f.guard, f.message)\n"
    )
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.splitlines() == ["forbidden-call forbidden call torch.rms_norm at main.py:3 "
                                       "(as torch._C._VariableFunctions.rms_norm, the same object)"]


# -- writes through __setattr__ ------------------------------------------------------------------


@pytest.mark.parametrize("code, finding", [
    ("import torch\nobject.__setattr__(torch.cuda, 'synchronize', print)\n",
     ("timer-patch", "timer patch: setattr on torch.cuda.synchronize at main.py:2")),
    ("import torch\ntorch.cuda.__setattr__('synchronize', print)\n",
     ("timer-patch", "timer patch: setattr on torch.cuda.synchronize at main.py:2")),
    ("import torch\ntype.__setattr__(torch.cuda.Event, 'elapsed_time', print)\n",
     ("timer-patch", "timer patch: setattr on torch.cuda.Event.elapsed_time at main.py:2")),
    ("import time\ntime.__delattr__('perf_counter')\n",
     ("timer-patch", "timer patch: setattr on time.perf_counter at main.py:2")),
    ("import time\nsetattr(time, 'perf_counter', print)\n",
     ("timer-patch", "timer patch: setattr on time.perf_counter at main.py:2")),
    ("import time\ndef f(name):\n    delattr(time, name)\n",
     ("timer-patch", "timer patch: delattr on time.* at main.py:3")),
    ("def f(g, h):\n    setattr(g, '__code__', h.__code__)\n",
     ("harness-tamper", "harness tamper: code swap (setattr on <object>.__code__) at main.py:2")),
    ("import time\nvars(time)['monotonic'] = print\n",
     ("timer-patch", "timer patch: assignment to time.monotonic at main.py:2")),
    ("import time\ndef f(key):\n    time.__dict__[key] = print\n",
     ("timer-patch", "timer patch: assignment to time.* at main.py:3")),
    ("import time\nobject.__delattr__(time, 'perf_counter')\n",
     ("timer-patch", "timer patch: setattr on time.perf_counter at main.py:2")),
    ("import torch\ndef f(n):\n    object.__setattr__(torch.cuda, n, print)\n",
     ("timer-patch", "timer patch: setattr on torch.cuda.* at main.py:3")),
    ("def f():\n    pass\nobject.__setattr__(f, '__code__', (lambda: 1).__code__)\n",
     ("harness-tamper", "harness tamper: code swap (setattr on <object>.__code__) at main.py:3")),
])
def test_a_write_through_setattr_names_the_attribute_it_rebinds(code, finding):
    assert findings(code) == [finding]


def test_a_hand_built_tree_without_line_numbers_is_reported_at_line_zero():
    # Code compiled at run time may come as a tree built by hand, with no line numbers
    # (the compile audit event hands it over before compile() would refuse it): its
    # findings are placed at line 0, the unknown line, never at a made-up line 1.
    import ast

    from solforge.bench.guards.code_strings import code_string_findings

    callee = ast.Attribute(ast.Attribute(ast.Attribute(ast.Name("torch", ast.Load()), "nn", ast.Load()), "functional",
                                         ast.Load()), "scaled_dot_product_attention", ast.Load())
    tree = ast.Module(body=[ast.Import(names=[ast.alias("torch")]),
                            ast.Expr(ast.Call(func=callee, args=[], keywords=[]))], type_ignores=[])
    got = [(f.guard, f.message) for f in code_string_findings(tree, [SDPA], "main.py")]
    assert ("forbidden-call", f"forbidden call {SDPA} at main.py:0") in got
    assert all(" at main.py:0" in message for _, message in got), got
