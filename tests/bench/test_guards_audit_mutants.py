"""The audit guard at the edges the first tests left open: writes outside the working
directory under a writable root (every way of opening for writing, removing, renaming),
whose code counts as the solution's (a symlinked directory, a file on the import path,
the frozen `os` module doing its bidding; never solforge's own), honest reads of
a function's own code, and what a network finding names.

Written against the mutants of `benchmarks/mutation.py` that the first tests let through;
each test states a rule of the guard's contract, not a line of its code.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import os
import sys
import uuid
from pathlib import Path

import pytest

from solforge.bench.guards import watch_call
from solforge.bench.guards.audit import AuditGuard

# Outside the working directory, /tmp and /dev/null; never created: the audit event comes
# before the system call, which then fails.
OUTSIDE = "/solforge-audit-test-nonexistent"
_GUARD: AuditGuard | None = None


def guard() -> AuditGuard:
    """One guard for this module (audit hooks stay for the life of the process)."""
    global _GUARD
    if _GUARD is None:
        _GUARD = AuditGuard()
    return _GUARD


@pytest.fixture()
def solution_dir(tmp_path):
    directory = tmp_path / "solution"
    directory.mkdir()
    yield directory
    guard().take()
    guard().armed = False


def armed(directory: Path, writable: Path | None = None) -> AuditGuard:
    g = guard()
    g.arm(str(directory), str(writable) if writable else None)
    g.take()
    return g


def run_as(directory: Path, source: str) -> object:
    """Write `source` as a module in `directory`, import it and call its `run()`."""
    path = directory / f"m_{uuid.uuid4().hex[:8]}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module.run()


def attempt(statement: str) -> str:
    """A solution whose run() tries `statement` and swallows the OSError that follows."""
    return f"import os, shutil\ndef run():\n    try:\n        {statement}\n    except OSError:\n        pass\n"


@pytest.mark.parametrize("statement, what", [
    (f"open('{OUTSIDE}/out.bin', 'w')", "open for writing"),
    (f"open('{OUTSIDE}/out.bin', 'ab')", "open for writing"),
    (f"open('{OUTSIDE}/out.bin', 'x')", "open for writing"),
    (f"open('{OUTSIDE}/out.bin', 'r+')", "open for writing"),
    (f"os.open('{OUTSIDE}/out.bin', os.O_WRONLY | os.O_CREAT)", "open for writing"),
    (f"os.open('{OUTSIDE}/out.bin', os.O_RDWR)", "open for writing"),
    (f"os.remove('{OUTSIDE}/out.bin')", "os.remove"),
    (f"os.rename('{OUTSIDE}/a', '{OUTSIDE}/b')", "os.rename"),
    (f"os.rmdir('{OUTSIDE}')", "os.rmdir"),
    (f"shutil.rmtree('{OUTSIDE}')", "shutil.rmtree"),
    (f"os.truncate('{OUTSIDE}/out.bin', 0)", "os.truncate"),
])
def test_a_write_outside_the_working_directory_is_named_under_a_writable_root(solution_dir, statement, what):
    g = armed(solution_dir, writable=solution_dir)
    run_as(solution_dir, attempt(statement))
    found = [(f.guard, f.message) for f in g.take()]
    assert found and all(guard_name == "filesystem" for guard_name, _ in found), found
    assert found[0][1].startswith(f"filesystem: {what} {OUTSIDE}") and " outside the working directory at m_" in \
        found[0][1], found


@pytest.mark.parametrize("statement", [
    f"open('{OUTSIDE}/in.bin')",
    f"open('{OUTSIDE}/in.bin', 'rb')",
    f"os.open('{OUTSIDE}/in.bin', os.O_RDONLY)",
    f"os.listdir('{OUTSIDE}')",
    "open('/dev/null', 'w').close()",
])
def test_reads_and_writes_to_dev_null_are_not_writes_outside(solution_dir, statement):
    g = armed(solution_dir, writable=solution_dir)
    run_as(solution_dir, attempt(statement))
    assert g.take() == []


def test_writes_inside_the_writable_root_and_tmp_are_allowed(solution_dir, tmp_path):
    writable = tmp_path / "work"
    writable.mkdir()
    g = armed(solution_dir, writable=writable)
    run_as(solution_dir, attempt(f"open('{writable}/out.bin', 'w').close(); os.remove('{writable}/out.bin')"))
    run_as(solution_dir, attempt(f"open('/tmp/solforge-audit-{uuid.uuid4().hex}', 'w').close()"))
    assert g.take() == []


def test_without_a_writable_root_only_writes_outside_the_honest_places_are_named(solution_dir):
    # Unsandboxed, the working directory and the temporary directories are where code
    # writes honestly; a write anywhere else from the solution's code is named.
    g = armed(solution_dir)
    scratch = f"/tmp/solforge-audit-{uuid.uuid4().hex}"
    run_as(solution_dir, attempt(f"open('{OUTSIDE}/out.bin', 'w')"))
    run_as(solution_dir, attempt(f"os.remove('{OUTSIDE}/out.bin')"))
    run_as(solution_dir, attempt(f"open('{solution_dir}/ok.bin', 'w').close(); os.remove('{solution_dir}/ok.bin')"))
    run_as(solution_dir, attempt(f"open('{scratch}', 'w').close(); os.remove('{scratch}')"))
    found = [(f.guard, f.message.split(" from the solution's code at ")[0]) for f in g.take()]
    assert found == [("filesystem", f"filesystem: open for writing {OUTSIDE}/out.bin (outside the working directory)"),
                     ("filesystem", f"filesystem: os.remove {OUTSIDE}/out.bin (outside the working directory)")]


def test_a_process_started_through_the_frozen_os_module_is_the_solutions(solution_dir):
    # os.spawnv is Python code of the frozen `os` module ("<frozen os>"): standard library,
    # so the solution that called it is to blame.
    g = armed(solution_dir)
    run_as(solution_dir, "import os\ndef run():\n    return os.spawnv(os.P_WAIT, '/bin/true', ['true'])\n")
    found = [(f.guard, f.message) for f in g.take()]
    assert found and found[0][0] == "thread-or-process" and found[0][1].startswith(
        "threads or processes: os.fork at m_"), found


def test_a_network_finding_names_the_address(solution_dir):
    g = armed(solution_dir)
    run_as(solution_dir, "import socket\ndef run():\n    s = socket.socket()\n    try:\n"
                         "        s.connect(('127.0.0.1', 9))\n    except OSError:\n        pass\n"
                         "    finally:\n        s.close()\n")
    found = [f.message for f in g.take()]
    assert found and found[0].startswith("network: socket.connect ('127.0.0.1', 9) at m_"), found


def test_the_solution_reached_through_a_symlink_is_still_the_solution(solution_dir, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(solution_dir, target_is_directory=True)
    g = armed(solution_dir)
    run_as(link, "import gc\ndef run():\n    return len(gc.get_objects())\n")
    found = [f.message for f in g.take()]
    assert found and found[0].startswith("introspection: gc.get_objects at m_"), found


def test_code_on_the_import_path_outside_the_libraries_is_not_a_library(solution_dir):
    # This test file's directory is on sys.path (pytest put it there), yet it is neither
    # the standard library, nor an installed library, nor solforge: its code is judged.
    assert str(Path(__file__).resolve().parent) in [os.path.realpath(p) for p in sys.path if p]
    g = armed(solution_dir)
    import gc

    gc.get_objects()
    found = [f.message for f in g.take()]
    assert found and found[0].startswith(f"introspection: gc.get_objects at {Path(__file__).name}:"), found


def test_solforges_own_code_is_not_blamed(solution_dir):
    # The thread guard lists the process's threads (sys._current_frames, a heap event)
    # while the audit guard is armed: the harness's own code is not the solution's.
    g = armed(solution_dir)
    with watch_call("cpu"):
        pass
    assert g.take() == []


def test_reading_a_functions_own_code_and_defaults_is_honest(solution_dir):
    g = armed(solution_dir)
    run_as(solution_dir, "def kernel(x, scale=2.0):\n    return x * scale\n"
                         "def run():\n    return kernel.__code__.co_argcount, kernel.__defaults__\n")
    assert g.take() == []


def test_another_process_proc_entries_are_refused_and_ones_own_status_is_not(solution_dir):
    g = armed(solution_dir)
    run_as(solution_dir, f"import os\ndef run():\n    return open(f'/proc/{{os.getpid()}}/status').read()[:10]\n")
    assert g.take() == []
    run_as(solution_dir, "import os\ndef run():\n    return open('/proc/1/status').read()[:10]\n")
    found = [f.message for f in g.take()]
    assert found and found[0].startswith("harness tamper: opens /proc/1/status at m_"), found


def test_truncating_an_open_file_by_its_descriptor_is_honest_under_a_writable_root(solution_dir):
    # os.truncate takes a descriptor as well as a path: the descriptor was opened (and
    # judged) already, and the call must still work.
    g = armed(solution_dir, writable=solution_dir)
    target = solution_dir / "scratch.bin"
    source = (f"import os\ndef run():\n    fd = os.open('{target}', os.O_RDWR | os.O_CREAT)\n"
              "    try:\n        os.write(fd, b'abcd')\n        os.truncate(fd, 1)\n        return os.fstat(fd).st_size\n"
              "    finally:\n        os.close(fd)\n")
    assert run_as(solution_dir, source) == 1
    assert g.take() == []


def signal_attempt(statement: str) -> str:
    """A solution whose run() sends signal 0 (no signal: an existence check) as
    `statement` says, and returns "sent" or the name of the exception it raised."""
    return (f"import os\ndef run():\n    try:\n        {statement}\n    except Exception as e:\n"
            "        return type(e).__name__\n    return 'sent'\n")


@pytest.mark.parametrize("statement", [
    "os.kill(os.getpid(), 0)",
    "os.kill(0, 0)",  # its own process group
    "os.kill(-os.getpgid(0), 0)",
    "os.killpg(os.getpgid(0), 0)",
])
def test_signals_to_the_solutions_own_process_and_group_are_sent(solution_dir, statement):
    g = armed(solution_dir)
    assert run_as(solution_dir, signal_attempt(statement)) == "sent"
    assert g.take() == []


def test_a_signal_to_a_child_the_solution_started_is_sent(solution_dir):
    g = armed(solution_dir)
    source = ("import os, subprocess\ndef run():\n    child = subprocess.Popen(['sleep', '5'])\n"
              "    try:\n        os.kill(child.pid, 0)\n        return 'sent'\n"
              "    finally:\n        child.kill()\n        child.wait()\n")
    assert run_as(solution_dir, source) == "sent"
    assert [f.guard for f in g.take() if f.guard != "thread-or-process"] == []


@pytest.mark.parametrize("statement, target", [
    ("os.kill(1, 0)", "os.kill(1, 0)"),
    ("os.killpg(1, 0)", "os.killpg(1, 0)"),
    ("os.kill(4194304, 0)", "os.kill(4194304, 0)"),  # above the kernel's pid limit: no such process
])
def test_a_signal_to_a_process_outside_the_solutions_own_is_refused_before_it_is_sent(solution_dir, statement,
                                                                                      target):
    g = armed(solution_dir)
    assert run_as(solution_dir, signal_attempt(statement)) == "PermissionError"
    found = [(f.guard, f.message.split(" at m_")[0]) for f in g.take()]
    assert found == [("harness-tamper", f"harness tamper: {target} signals a process outside the solution's own")]


def test_the_import_systems_bytecode_write_is_not_the_solutions(solution_dir, monkeypatch):
    # Importing a module from a directory outside the honest places makes the import
    # system write its .pyc there: the solution imported, it did not write.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    home = Path(os.path.expanduser("~"))
    outside = Path(tempfile.mkdtemp(prefix="solforge-audit-import-", dir=home))
    try:
        name = f"audit_import_{uuid.uuid4().hex[:8]}"
        (outside / f"{name}.py").write_text("VALUE = 7\n")
        g = armed(solution_dir)
        source = (f"import sys\ndef run():\n    sys.path.insert(0, {str(outside)!r})\n    try:\n"
                  f"        import {name}\n        return {name}.VALUE\n    finally:\n        sys.path.remove({str(outside)!r})\n")
        assert run_as(solution_dir, source) == 7
        assert list((outside / "__pycache__").glob(f"{name}.*.pyc")), "the import wrote no bytecode: nothing tested"
        assert g.take() == []
    finally:
        shutil.rmtree(outside, ignore_errors=True)
