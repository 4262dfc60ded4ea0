"""The audit guard in-process: events raised by the solution's own code are named,
whatever the spelling; the same events raised by libraries on its behalf are not."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import pytest

from solforge.bench.guards.audit import AuditGuard

_GUARD: AuditGuard | None = None


@pytest.fixture()
def audit(tmp_path):
    """One process-wide guard (audit hooks cannot be removed), armed on `tmp_path`."""
    global _GUARD
    if _GUARD is None:
        _GUARD = AuditGuard()
    _GUARD.arm(str(tmp_path / "solution"))
    (tmp_path / "solution").mkdir()
    _GUARD.take()
    yield _GUARD
    _GUARD.take()
    _GUARD.armed = False


def run_as(directory: Path, source: str) -> object:
    """Write `source` as a module in `directory`, import it and call its `run()`."""
    path = directory / f"m_{uuid.uuid4().hex[:8]}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module.run()


@pytest.mark.parametrize("source, guard, phrase", [
    ("import sys\ndef run():\n    return sys._getframe(1).f_locals\n", "introspection", "walks the call stack"),
    ("def run():\n    try:\n        raise ValueError\n    except ValueError as e:\n"
     "        return getattr(e.__traceback__, 'tb_' + 'frame')\n", "introspection", "reads a frame's tb_frame"),
    ("import traceback\ndef run():\n    return list(traceback.walk_stack(None))\n", "introspection",
     "walks the call stack"),
    ("import inspect\ndef run():\n    return inspect.stack()\n", "introspection", "walks the call stack"),
    ("import gc\ndef run():\n    return len(gc.get_objects())\n", "introspection", "gc.get_objects"),
    ("import os\ndef run():\n    return open(f'/proc/{os.getppid()}/cmdline', 'rb').read()\n", "harness-tamper",
     "opens /proc/"),
    ("import os\ndef run():\n    return os.listdir('/proc/self/fd') and open('/proc/self/fd/0', 'rb')\n",
     "harness-tamper", "opens /proc/self/fd/0"),
    ("import subprocess\ndef run():\n    return subprocess.run(['true']).returncode\n", "thread-or-process",
     "subprocess.Popen"),
    ("import socket\ndef run():\n    s = socket.socket()\n    try:\n        s.connect(('127.0.0.1', 9))\n"
     "    except OSError:\n        pass\n    finally:\n        s.close()\n", "network", "socket.connect"),
    # torch's natives by symbol: its libraries, its C ABI and mangled C++ names anywhere, the linker's lookups
    ("import ctypes, os, torch\ndef run():\n    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "
     "'lib', 'libc10.so'))\n    return getattr(lib, 'any_symbol', None)\n", "forbidden-call", "in libc10.so"),
    ("import ctypes\ndef run():\n    return getattr(ctypes.CDLL(None), 'aoti_torch_' + 'cpu_mm', None)\n",
     "forbidden-call", "'aoti_torch_cpu_mm'"),
    ("import ctypes\ndef run():\n    return getattr(ctypes.CDLL(None), '_ZN2at6native3addERKNS_6TensorE', None)\n",
     "forbidden-call", "_ZN2at6native3add"),
    ("import ctypes\ndef run():\n    return ctypes.CDLL('libc.so.6').dlsym\n",
     "forbidden-call", "'dlsym'"),
    ("import ctypes, os, torch\ndef run():\n    f = ctypes.CFUNCTYPE(ctypes.c_bool)\n"
     "    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libtorch_cpu.so'))\n"
     "    return f(('aoti_torch_grad_mode_is_enabled', lib))\n", "forbidden-call",
     "aoti_torch_grad_mode_is_enabled"),
])
def test_the_solutions_own_events_are_named(audit, tmp_path, source, guard, phrase):
    run_as(tmp_path / "solution", source)
    found = audit.take()
    assert any(f.guard == guard and phrase in f.message for f in found), found


def test_a_helper_written_elsewhere_and_imported_is_the_solutions_code_too(audit, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_as(elsewhere, "import gc\ndef run():\n    return len(gc.get_objects())\n")
    assert any(f.guard == "introspection" for f in audit.take())


@pytest.mark.parametrize("source", [
    "import warnings\ndef run():\n    warnings.warn('slow path taken')\n",
    "import logging\ndef run():\n    logging.getLogger('kernel').warning('hello')\n",
    "import traceback\ndef run():\n    try:\n        raise ValueError('x')\n    except ValueError:\n"
    "        return traceback.format_exc()\n",
    "import torch\ndef run():\n    torch.manual_seed(0)\n    return torch.randn(2)\n",
    "import collections\ndef run():\n    return collections.namedtuple('P', 'a b')(1, 2)\n",
    "import os\ndef run():\n    return open('/proc/self/status').read()[:10]\n",
    # ctypes into a C library of one's own or libc's math: not torch's natives
    "import ctypes\ndef run():\n    m = ctypes.CDLL('libm.so.6')\n"
    "    m.cos.restype = ctypes.c_double\n    return m.cos(ctypes.c_double(0.0))\n",
])
def test_honest_code_is_not_blamed(audit, tmp_path, source):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_as(tmp_path / "solution", source)
    assert audit.take() == []


def test_library_code_acting_on_its_own_is_not_blamed(audit):
    import json

    json.loads("[1]")
    import torch

    torch.manual_seed(0)
    assert audit.take() == []


def test_unsandboxed_writes_are_the_solutions_whoever_writes_them(audit, tmp_path, monkeypatch):
    """Without the sandbox: a write into solforge's cache (even in /tmp) through a
    library's writer (the solution's frame is further down the stack), and a write
    outside the working directory, the temporary directories and the per-user caches,
    are named."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(cache))
    audit.arm(str(tmp_path / "solution"))
    run_as(tmp_path / "solution", f"import numpy\ndef run():\n    numpy.save({str(cache / 'x')!r}, numpy.zeros(2))\n")
    found = audit.take()
    assert any(f.guard == "filesystem" and "solforge's cache" in f.message for f in found), found
    outside = Path.home() / f".solforge-audit-{uuid.uuid4().hex[:8]}"
    try:
        run_as(tmp_path / "solution", f"import numpy\ndef run():\n    numpy.save({str(outside)!r}, numpy.zeros(2))\n")
        found = audit.take()
        assert any(f.guard == "filesystem" and "outside the working directory" in f.message and str(outside) in f.message
                   for f in found), found
    finally:
        for leftover in outside.parent.glob(outside.name + "*"):
            leftover.unlink()


def test_unsandboxed_honest_writes_are_not_named(audit, tmp_path, monkeypatch):
    """The working directory, /tmp and a library's per-user cache are where code writes."""
    import shutil

    monkeypatch.chdir(tmp_path / "solution")
    cache = Path.home() / ".cache" / f"solforge-audit-{uuid.uuid4().hex[:8]}"
    try:
        run_as(tmp_path / "solution", "import os, tempfile\ndef run():\n    open('out.log', 'a').close()\n"
               "    with tempfile.NamedTemporaryFile('w') as f:\n        f.write('x')\n"
               f"    os.makedirs({str(cache)!r}, exist_ok=True)\n    open(os.path.join({str(cache)!r}, 'k'), 'w').close()\n")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert audit.take() == []


@pytest.mark.parametrize("source, phrase", [
    ("import os\ndef run():\n    os.kill(os.getppid(), 0)\n", "os.kill("),
    ("import os\ndef run():\n    os.killpg(1, 0)\n", "os.killpg(1, 0)"),  # init's group: never the solution's
    ("import ctypes\ndef run():\n    return ctypes.CDLL(None).kill\n", "libc's kill through ctypes"),
    ("import ctypes\ndef run():\n    return getattr(ctypes.CDLL('libc.so.6'), 'op' + 'en')\n",
     "libc's open through ctypes"),
])
def test_signals_to_other_processes_are_refused_and_named(audit, tmp_path, source, phrase):
    """A signal to a process outside the solution's own tree (the harness's) never leaves:
    the hook raises, and names it."""
    with pytest.raises(PermissionError):
        run_as(tmp_path / "solution", source)
    found = audit.take()
    assert any(f.guard == "harness-tamper" and phrase in f.message for f in found), found


def test_signals_to_its_own_process_are_allowed(audit, tmp_path):
    run_as(tmp_path / "solution", "import os\ndef run():\n    os.kill(os.getpid(), 0)\n    os.killpg(0, 0)\n")
    assert audit.take() == []


def test_a_pidfd_to_another_process_is_refused_and_named(audit, tmp_path):
    """os.pidfd_open raises no audit event of its own; the guard's wrapper does, so the
    pidfd that signal.pidfd_send_signal needs is refused for the harness's processes."""
    import os

    if not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open here")
    with pytest.raises(PermissionError):
        run_as(tmp_path / "solution", "import os, signal\ndef run():\n"
                                      "    signal.pidfd_send_signal(os.pidfd_open(os.getppid()), 0)\n")
    assert any(f.guard == "harness-tamper" and "os.pidfd_open(" in f.message for f in audit.take())
    run_as(tmp_path / "solution", "import os\ndef run():\n    os.close(os.pidfd_open(os.getpid()))\n")
    assert audit.take() == []


def test_code_compiled_under_a_librarys_name_stays_the_solutions(audit, tmp_path):
    """A file name is a label the solution chooses: code it compiles under torch's path is
    named, and a frame walk from that code is still the solution's."""
    import torch

    spoofed = str(Path(torch.__file__).parent / "_not_a_torch_file.py")
    run_as(tmp_path / "solution", "import types\ndef run():\n"
           f"    code = compile('import sys\\ndef walk():\\n    return sys._getframe(1)\\n', {spoofed!r}, 'exec')\n"
           "    ns = {}\n    exec(code, ns)\n    return ns['walk']()\n")
    found = audit.take()
    assert any(f.guard == "introspection" and "under a library's file name" in f.message for f in found), found
    assert any(f.guard == "introspection" and "walks the call stack at _not_a_torch_file.py" in f.message
               for f in found), found


def test_code_made_with_a_replaced_file_name_stays_the_solutions(audit, tmp_path):
    run_as(tmp_path / "solution", "import sys\ndef walk():\n    return sys._getframe(1)\n"
           "def run():\n    fn = type(walk)(walk.__code__.replace(co_filename='<frozen importlib._bootstrap>'), "
           "globals())\n    return fn()\n")
    assert any(f.guard == "introspection" and "walks the call stack" in f.message for f in audit.take())


def test_honest_generated_code_is_not_named(audit, tmp_path):
    """exec of a generated string, and a module generated into /tmp and imported, with no
    frame reads: nothing to name."""
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / f"g_{uuid.uuid4().hex[:8]}.py").write_text("def f(x):\n    return x + 1\n")
    run_as(tmp_path / "solution", "import importlib.util, pathlib\ndef run():\n"
           "    ns = {}\n    exec(compile('def g(x):\\n    return 2 * x\\n', '<generated>', 'exec'), ns)\n"
           f"    path = next(pathlib.Path({str(gen)!r}).glob('g_*.py'))\n"
           "    spec = importlib.util.spec_from_file_location(path.stem, path)\n"
           "    module = importlib.util.module_from_spec(spec)\n    spec.loader.exec_module(module)\n"
           "    return module.f(ns['g'](1))\n")
    assert audit.take() == []


def test_a_solutions_own_compile_cache_is_its_to_write_and_the_rest_of_solforges_cache_is_not(
        audit, tmp_path, monkeypatch):
    """`bench.compile_cache`: the solution's compilers write into its own directory under
    solforge's cache; a write into another solution's directory there (a planted
    artifact another candidate would load) is named."""
    cache = tmp_path / "cache"
    own, other = cache / "compile" / "own", cache / "compile" / "other"
    own.mkdir(parents=True)
    other.mkdir(parents=True)
    monkeypatch.setenv("SOLFORGE_CACHE_DIR", str(cache))
    audit.arm(str(tmp_path / "solution"), own_cache=str(own))
    run_as(tmp_path / "solution", f"import numpy\ndef run():\n    numpy.save({str(own / 'k')!r}, numpy.zeros(2))\n")
    assert audit.take() == []
    run_as(tmp_path / "solution", f"import numpy\ndef run():\n    numpy.save({str(other / 'k')!r}, numpy.zeros(2))\n")
    found = audit.take()
    assert any(f.guard == "filesystem" and "solforge's cache" in f.message and str(other) in f.message
               for f in found), found
