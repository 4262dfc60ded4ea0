"""The static guard catches each hack written in a solution's source, however it is
spelled, and passes honest kernels (prange, set_num_threads, side streams, helpers)."""

from __future__ import annotations

import pytest
from exploits import RMSNORM, solution

from solforge.bench.guards import static_findings
from solforge.spec import Definition, Solution

FORBIDDEN_RMSNORM = "forbidden call torch.nn.functional.rms_norm at main.py:"


def definition(*forbidden: str) -> Definition:
    return RMSNORM.model_copy(update={"solforge": RMSNORM.solforge.model_copy(update={"forbidden_calls": list(forbidden)})})


def inline(code: str, language: str = "pytorch", path: str = "main.py", entry: str = "main.py::run") -> Solution:
    return Solution.model_validate({
        "name": "inline", "definition": RMSNORM.name,
        "spec": {"language": language, "entry_point": entry, "destination_passing_style": False}, "sources": [{"path": path, "content": code}],
    })


def findings(code: str, *forbidden: str, **kwargs) -> list[tuple[str, str]]:
    return [(f.guard, f.message) for f in static_findings(inline(code, **kwargs), definition(*forbidden))]


def guards(code: str, *forbidden: str, **kwargs) -> set[str]:
    return {g for g, _ in findings(code, *forbidden, **kwargs)}


SDPA = "torch.nn.functional.scaled_dot_product_attention"


# -- forbidden calls ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["forbidden_direct", "forbidden_alias", "forbidden_from_import", "forbidden_getattr"])
def test_forbidden_call_exploits_are_caught(name):
    got = static_findings(solution(name), RMSNORM)
    assert [f.guard for f in got] and {f.guard for f in got} == {"forbidden-call"}
    assert any(f.message.startswith(FORBIDDEN_RMSNORM) for f in got), got


@pytest.mark.parametrize("code, line", [
    ("import torch\ndef run(q):\n    return torch.nn.functional.scaled_dot_product_attention(q, q, q)\n", 3),
    ("import torch.nn.functional as F\ndef run(q):\n    return F.scaled_dot_product_attention(q, q, q)\n", 3),
    ("from torch.nn import functional as F\n\ndef run(q):\n    return F.scaled_dot_product_attention(q, q, q)\n", 4),
    ("from torch.nn.functional import scaled_dot_product_attention as sdpa\ndef run(q):\n    return sdpa(q, q, q)\n", 3),
    ("import torch.nn.functional as F\nf = F.scaled_dot_product_attention\ndef run(q):\n    return f(q, q, q)\n", 2),
    ("import torch.nn.functional as F\ndef run(q):\n    return getattr(F, 'scaled_' + 'dot_product_attention')(q, q, q)\n", 3),
    ("import torch.nn.functional as F\ndef run(q):\n    return getattr(F, f'scaled_dot_{\"product\"}_attention')(q, q, q)\n", 3),
    ("import torch.nn.functional as F\ndef run(q):\n    return getattr(F, 'noitnetta_tcudorp_tod_delacs'[::-1])(q, q, q)\n", 3),
    ("import torch.nn.functional as F\ndef run(q):\n    return getattr(F, '_'.join(['scaled', 'dot', 'product', 'attention']))(q, q, q)\n", 3),
    ("import torch.nn.functional as F\ndef run(q):\n    return vars(F)['scaled_dot_product_attention'](q, q, q)\n", 3),
    ("import torch.nn.functional as F\ndef run(q):\n    return F.__dict__.get('scaled_dot_product_attention')(q, q, q)\n", 3),
    ("import importlib\nF = importlib.import_module('torch.nn.functional')\ndef run(q):\n"
     "    return F.scaled_dot_product_attention(q, q, q)\n", 4),
    ("import sys\ndef run(q):\n    return sys.modules['torch.nn.functional'].scaled_dot_product_attention(q, q, q)\n", 3),
    ("F = __import__('torch.nn.functional', fromlist=['x'])\ndef run(q):\n    return F.scaled_dot_product_attention(q, q, q)\n", 3),
    ("from torch.nn.functional import *\ndef run(q):\n    return scaled_dot_product_attention(q, q, q)\n", 3),
    ("import torch.nn.functional as F\ndef run(q):\n    exec('y = F.scaled_dot_product_attention(q, q, q)')\n", 3),
    ("g = getattr\nimport torch.nn.functional as F\ndef run(q):\n    return g(F, 'scaled_dot_product_attention')(q, q, q)\n", 4),
])
def test_forbidden_call_spellings_resolve_to_the_forbidden_name(code, line):
    got = findings(code, SDPA)
    assert any(g == "forbidden-call" and m.startswith(f"forbidden call {SDPA} at main.py:{line}") for g, m in got), got


def test_the_same_object_under_another_name_and_its_aten_op_are_caught():
    via_c = findings("import torch\ndef run(q):\n    return torch._C._nn.scaled_dot_product_attention(q, q, q)\n", SDPA)
    assert via_c == [("forbidden-call", f"forbidden call {SDPA} at main.py:3 "
                                        "(as torch._C._nn.scaled_dot_product_attention, the same object)")]
    aten = findings("import torch\ndef run(q):\n    return torch.ops.aten.scaled_dot_product_attention(q, q, q)\n", SDPA)
    assert aten and "aten op" in aten[0][1]


def test_a_dynamic_getattr_on_the_module_holding_a_forbidden_function_is_flagged():
    code = "import torch.nn.functional as F\ndef run(q, name):\n    return getattr(F, name)(q, q, q)\n"
    got = findings(code, SDPA)
    assert got and "dynamic attribute lookup on torch.nn.functional" in got[0][1]
    # ...but not on an unrelated module, nor when nothing is forbidden there.
    assert findings("import torch\ndef run(q, name):\n    return getattr(torch, name)\n", SDPA) == []


def test_method_forms_are_caught_only_when_the_tensor_method_is_forbidden():
    code = "def run(x):\n    return x.softmax(-1)\n"
    assert findings(code, "torch.Tensor.softmax") == [
        ("forbidden-call", "forbidden call torch.Tensor.softmax at main.py:2 (method form)")]
    assert guards("def run(x):\n    return getattr(x, 'softmax')(-1)\n", "torch.Tensor.softmax") == {"forbidden-call"}
    assert findings(code, "torch.nn.functional.softmax") == []


def test_a_computed_exec_string_is_left_to_the_check_at_compile_time():
    # Generated kernel source (one per shape) is honest; what it says is checked when it is
    # compiled, in the solution's process (guards.code_strings), with the same rules.
    code = "def run(x, src):\n    exec(src)\n"
    assert findings(code, SDPA) == [] and findings(code) == []


def compiled(source: str, *forbidden: str) -> list[tuple[str, str]]:
    import ast

    from solforge.bench.guards.code_strings import code_string_findings

    return [(f.guard, f.message) for f in code_string_findings(ast.parse(source), list(forbidden), "<source>")]


@pytest.mark.parametrize("source, message", [
    # spelled out in the string: the static rules, aliases and all
    ("import torch.nn.functional as F\ny = F.scaled_dot_product_attention(q, q, q)\n",
     f"forbidden call {SDPA} at <source>:2"),
    # names from the namespace it runs in (exec(src, {"F": torch.nn.functional})): no AST resolves them
    ("y = F.scaled_dot_product_attention(q, q, q)\n",
     f"forbidden call {SDPA} at <source>:1 (attribute .scaled_dot_product_attention)"),
    ("y = scaled_dot_product_attention(q, q, q)\n",
     f"forbidden call {SDPA} at <source>:1 (name scaled_dot_product_attention from the namespace it runs in)"),
    ("y = getattr(F, name)(q, q, q)\n", "forbidden call check defeated: getattr with a computed name at <source>:1"),
])
def test_source_compiled_at_run_time_is_held_to_the_static_rules_and_its_unresolved_names(source, message):
    assert message in [m for _, m in compiled(source, SDPA)], compiled(source, SDPA)


def test_honest_generated_source_passes_the_compile_time_check():
    kernel = ("def rows(x, weight, out):\n    for r in range(x.shape[0]):\n"
              "        inv = 1.0 / np.sqrt((x[r] * x[r]).sum() / 64 + 1e-6)\n        out[r] = x[r] * inv * weight\n")
    assert compiled(kernel, SDPA, "torch.rms_norm") == []
    own = "def scaled_dot_product_attention(q):\n    return q\ny = scaled_dot_product_attention(q)\n"
    assert compiled(own, SDPA) == []  # its own function of the same name: bound in the source
    assert compiled("y = getattr(F, name)(q)\n") == []  # nothing forbidden, nothing to hide


def test_look_alike_names_are_not_forbidden_calls():
    code = ("import torch\nimport torch.nn.functional as F\n"
            "def scaled_dot_product_attention(q, k, v):\n    return q\n"
            "def run(q):\n    a = torch.softmax(q, -1)\n    b = F.relu(q)\n"
            "    return scaled_dot_product_attention(a, b, q)  # our own function, same name\n")
    assert findings(code, SDPA, "torch.nn.functional.softmax") == []


# -- left to run time ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    # the lazy-compile idiom: a compiled kernel cached in a module global, not a result
    "_kernel = None\ndef _build():\n    return lambda x: x * 2\ndef run(x):\n    global _kernel\n"
    "    if _kernel is None:\n        _kernel = _build()\n    return _kernel(x)\n",
    # threading imported only for a Lock around that cache
    "import threading\n_lock = threading.Lock()\n_kernel = None\ndef run(x):\n    global _kernel\n"
    "    with _lock:\n        if _kernel is None:\n            _kernel = abs\n    return _kernel(x)\n",
    "from concurrent.futures import ThreadPoolExecutor\ndef run(x):\n    return x\n",
])
def test_honest_idioms_pass_the_static_guard(code):
    assert findings(code) == []


@pytest.mark.parametrize("code", [
    "import os\ndef run(x):\n    os.system('true')\n    return x\n",
    "def run(x):\n    __import__('threading').Thread(target=print).start()\n    return x\n",
    "import inspect\ndef run(x):\n    return inspect.currentframe().f_back.f_locals['reference']\n",
    "import gc\ndef run(x):\n    return [o for o in gc.get_objects()]\n",
])
def test_threads_processes_and_introspection_are_left_to_the_run_time_guards(code):
    # The runtime guards (watch, audit) see these whatever the spelling; tests/bench/
    # test_guards_e2e.py has their exploits caught there.
    assert findings(code) == []


# -- timer and harness patching ------------------------------------------------------------


def test_timer_patch_exploits_are_caught():
    perf = static_findings(solution("patch_perf_counter"), RMSNORM)
    assert [(f.guard, f.message) for f in perf] == [
        ("timer-patch", "timer patch: assignment to time.perf_counter at main.py:7")]
    cuda = {f.message for f in static_findings(solution("patch_cuda_timing"), RMSNORM)}
    assert cuda == {"timer patch: assignment to torch.cuda.synchronize at main.py:4",
                    "timer patch: assignment to torch.cuda.Event.elapsed_time at main.py:5"}


@pytest.mark.parametrize("code, guard", [
    ("import time\nsetattr(time, 'perf_counter', lambda: 0.0)\n", "timer-patch"),
    ("import time\nvars(time)['monotonic'] = lambda: 0.0\n", "timer-patch"),
    ("from torch.cuda import Event\nEvent.elapsed_time = lambda s, e: 0.0\n", "timer-patch"),
    ("import torch\nobject.__setattr__(torch.cuda, 'synchronize', print)\n", "timer-patch"),
    ("import triton.testing\ntriton.testing.do_bench = lambda *a, **k: 0.001\n", "timer-patch"),
    ("import solforge.bench.correctness as c\nc.compare_outputs = lambda *a: True\n", "harness-tamper"),
    ("import torch\ntorch.allclose = lambda *a, **k: True\n", "harness-tamper"),
    ("import torch\ndel torch.testing.assert_close\n", "harness-tamper"),
    ("import sys\nsys.modules['time'] = None\n", "harness-tamper"),
    ("import sys\nsys.modules.update({'time': None})\n", "harness-tamper"),
    ("import builtins\nbuiltins.len = lambda x: 0\n", "harness-tamper"),
    ("__builtins__['len'] = lambda x: 0\n", "harness-tamper"),
    ("def f():\n    pass\nf.__code__ = (lambda: 1).__code__\n", "harness-tamper"),
    ("def f(x):\n    f.__globals__['torch'] = None\n", "harness-tamper"),
    ("import sys\ndef run(x):\n    sys.settrace(print)\n    return x\n", "harness-tamper"),
    ("import torch\ndef run(x):\n    return torch._C._len_torch_function_stack()\n", "harness-tamper"),
    ("import triton\ntriton.runtime.jit.JITFunction.run = print\n", "harness-tamper"),
    ("import torch\nlib = torch.library.Library('aten', 'IMPL')\n", "harness-tamper"),
    ("import torch\n@torch.library.impl('aten::mul.Tensor', 'CPU')\ndef mul(a, b):\n    return a\n", "harness-tamper"),
    ("from torch.utils._python_dispatch import TorchDispatchMode\nclass M(TorchDispatchMode):\n    pass\n",
     "harness-tamper"),
])
def test_patching_spellings_are_caught(code, guard):
    assert guard in guards(code), findings(code)


def test_registering_ones_own_op_is_not_patching():
    code = ("import torch\n@torch.library.custom_op('mylib::rmsnorm', mutates_args=())\n"
            "def rmsnorm(x: torch.Tensor) -> torch.Tensor:\n    return x.clone()\n"
            "lib = torch.library.Library('mylib', 'FRAGMENT')\n"
            "def run(x):\n    return rmsnorm(x)\n")
    assert findings(code) == []


def test_config_writes_and_local_rebinding_are_not_patching():
    code = ("import os, time, torch\nfrom time import perf_counter\n"
            "os.environ['TRITON_PRINT_AUTOTUNING'] = '1'\n"
            "torch.backends.cuda.matmul.allow_tf32 = False\n"
            "torch._dynamo.config.cache_size_limit = 64\n"
            "perf_counter = None  # rebinding our own name patches nothing\n"
            "def run(x):\n    t = time.perf_counter()\n    return x\n")
    assert findings(code) == []


# -- caching devices -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    "import functools\n@functools.lru_cache(maxsize=None)\ndef run(x):\n    return x\n",
    "import functools\n@functools.cache\ndef run(x):\n    return x\n",
    "from functools import lru_cache as memo\n@memo\ndef run(x):\n    return x\n",
    "import functools\ndef _impl(x):\n    return x\nrun = functools.lru_cache(_impl)\n",
    "def run(x, _seen={}):\n    return _seen.setdefault(id(x), x)\n",
])
def test_caching_devices_are_caught(code):
    assert guards(code) == {"caching"}
    assert all("caching results across calls" in m for _, m in findings(code))


def test_a_cached_helper_is_not_a_cached_entry_point():
    code = ("import functools\n@functools.lru_cache\ndef block_size(n):\n    return 128\n"
            "def run(x):\n    return x * block_size(x.shape[-1])\n")
    assert findings(code) == []


# -- honest kernels and the edges ------------------------------------------------------------


@pytest.mark.parametrize("name, language", [
    ("honest_torch", "pytorch"), ("honest_set_num_threads", "pytorch"), ("honest_numba_prange", "numba"),
    ("honest_triton", "triton"), ("honest_side_stream", "pytorch"),
])
def test_honest_kernels_pass(name, language):
    assert static_findings(solution(name, language), RMSNORM) == []


def test_a_source_that_does_not_parse_yields_no_finding():
    assert findings("def run(x:\n    return x\n") == []


# -- CUDA C++ ------------------------------------------------------------------------------


def cpp(code: str, *forbidden: str) -> list[tuple[str, str]]:
    sol = Solution.model_validate({
        "name": "cu", "definition": RMSNORM.name, "spec": {"language": "cuda", "entry_point": "kernel.cu::run", "destination_passing_style": False},
        "sources": [{"path": "kernel.cu", "content": code}],
    })
    return [(f.guard, f.message) for f in static_findings(sol, definition(*forbidden))]


def test_cpp_forbidden_calls_threads_and_timer_interposition_are_caught():
    code = ("#include <torch/extension.h>\n#include <thread>\n"
            "// at::rms_norm(x) in a comment does not count\n"
            "torch::Tensor run(torch::Tensor x, torch::Tensor w) {\n"
            "  std::thread t([]{});\n"
            "  auto y = at::rms_norm(x, {x.size(-1)}, w, 1e-6);\n"
            "  return y.softmax(-1);\n}\n"
            "extern \"C\" cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) { *ms = 0; return 0; }\n")
    got = cpp(code, "torch.rms_norm", "torch.Tensor.softmax")
    assert ("forbidden-call", "forbidden call torch.rms_norm at kernel.cu:6") in got
    assert ("forbidden-call", "forbidden call torch.Tensor.softmax at kernel.cu:7") in got
    assert ("thread-or-process", "threads or processes: std::thread at kernel.cu:5") in got
    assert ("timer-patch", "timer patch: interposes cudaEventElapsedTime at kernel.cu:9") in got
    assert len(got) == 4


def test_honest_cpp_passes():
    code = ("#include <torch/extension.h>\n"
            "__global__ void __launch_bounds__(256) rmsnorm_kernel(const float* x, float* y, int n) {}\n"
            "torch::Tensor run(torch::Tensor x) {\n  cudaStream_t s; cudaStreamCreate(&s);\n"
            "  #pragma omp parallel for\n  for (int i = 0; i < 4; ++i) {}\n"
            "  cudaEvent_t e; cudaEventRecord(e, s); cudaStreamSynchronize(s);\n"
            "  return torch::empty_like(x);\n}\n")
    assert cpp(code, "torch.rms_norm") == []
