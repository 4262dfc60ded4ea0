"""The template's numba warm-up (`solforge.bench.numba_warmup`): it must leave the
process safe to fork (no threading layer loaded: a child of a process that used GNU
OpenMP aborts at its first parallel region), warm what a later compile reuses, and be
what the template runs before it forks the judge's children."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

numba = pytest.importorskip("numba")

_FORK_AFTER_WARM = textwrap.dedent("""
    import os, sys
    import numpy as np, numba
    from solforge.bench.numba_warmup import warm
    seconds = warm()
    assert seconds > 0
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    print("layer after warm-up:", layer, flush=True)
    pid = os.fork()
    if pid == 0:
        @numba.njit(parallel=True)
        def rows(x, out):
            for i in numba.prange(x.shape[0]):
                s = np.float32(0.0)
                for j in range(x.shape[1]):
                    s += x[i, j] * x[i, j]
                out[i] = s
        x = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)
        out = np.empty(64, np.float32)
        rows(x, out)
        ok = np.allclose(out, (x * x).sum(axis=1), rtol=1e-5)
        print("child:", numba.threading_layer(), ok, flush=True)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print("child status:", os.waitstatus_to_exitcode(status), flush=True)
""")


def test_warm_up_loads_no_threading_layer_and_a_forked_child_runs_a_parallel_kernel():
    done = subprocess.run([sys.executable, "-c", _FORK_AFTER_WARM], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "layer after warm-up: None" in done.stdout  # a parallel compile would have loaded one
    assert "child status: 0" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "fork() called from a process already using GNU OpenMP" not in done.stderr


def test_warm_up_kernels_compute_what_their_idioms_mean():
    """The warm-up runs its kernels; a kernel that does not compile (an idiom numba
    rejects) fails here rather than silently leaving the template cold."""
    import numpy as np

    from solforge.bench.numba_warmup import _kernels

    bf16_rows, f32_rows = _kernels()
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    out = np.empty_like(x)
    acc = np.zeros(1, np.float64)
    scratch = f32_rows(x, out, acc)
    assert np.allclose(out, np.exp(x - 4.0))
    assert scratch[0, 0] == 4.0 and np.isclose(scratch[0, 1], np.exp(x - 4.0).sum())
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # exact bf16 of small integers
    y = np.zeros_like(bits)
    bf16_rows(bits, np.full(4, 0x3F80, np.uint16), y)  # weight 1.0 in bf16
    g = x[0]
    expected = g / np.sqrt((g * g).mean() + 1e-5) + g / (1 + np.exp(-g)) - g.max()
    got = (y[0].astype(np.uint32) << 16).view(np.float32)
    assert np.allclose(got, expected, rtol=1e-2, atol=1e-2)


def test_template_imports_the_warm_up_before_forking(tmp_path):
    """A solution's process is forked from the template: the warm-up module (and its
    compiled kernels) is already in it."""
    from solforge.bench.processes import PRELOAD

    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        import multiprocessing, sys
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(%r)
        def child(q):
            import sys
            mod = sys.modules.get("solforge.bench.numba_warmup")
            q.put(mod is not None)
        if __name__ == "__main__":
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(q,))
            p.start(); print("warm module in child:", q.get(timeout=240)); p.join()
    """) % (list(PRELOAD),))
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "warm module in child: True" in done.stdout, done.stdout + done.stderr[-2000:]
