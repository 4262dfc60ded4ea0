"""The template process's preload: imported once, by `multiprocessing`'s forkserver, in
the process every judge child is forked from (see `processes`). Only that process
imports this module.

It ties the template's life to the judge's process (a watchdog thread that ends the
template within 0.2 s of the judge's death by any signal; PR_SET_PDEATHSIG would follow
the judge's *thread* that started it, which may end first), so that the template cannot
outlive the judge;
each child then dies with the template by its own PR_SET_PDEATHSIG (`child`). It makes
the template not dumpable, a child subreaper, and drops every capability (see below). It
also loads what every child needs (torch, numpy, numba, solforge's child code), once.
"""

from __future__ import annotations

import signal

from solforge.bench import child  # noqa: F401  (the heavy imports, once for every child)
from solforge.bench.child import PR_SET_DUMPABLE, _prctl, drop_privileges, tie_to_parent

PR_SET_CHILD_SUBREAPER = 36

tie_to_parent(signal.SIGKILL, watchdog=True)
# Not dumpable: a child cannot read or write this process's memory through /proc/<pid>/mem
# (the children drop CAP_SYS_PTRACE, which is what root would need for it).
_prctl(PR_SET_DUMPABLE, 0)
# A process a solution detaches (double fork, setsid) is reparented here, not to init,
# where the judge finds and kills it when that solution's process ends.
_prctl(PR_SET_CHILD_SUBREAPER, 1)
# No capabilities here either: nothing the template or any child does needs one, and a
# process forked from here (by a request to the fork server, which serves whoever finds its
# socket) must not regain what the solution's process dropped (root's CAP_SYS_PTRACE reads
# a non-dumpable judge's descriptors through /proc).
drop_privileges()

# numba's one-time costs (its contexts, the overloads a kernel meets) once here, not in
# every solution's process: ~0.3-0.5 s off each numba candidate's compile (`numba_warmup`).
try:
    from solforge.bench.numba_warmup import warm

    warm()
except ImportError:  # numba is optional outside the CPU extra
    pass
except Exception as exc:  # noqa: BLE001 - a warm-up that fails costs time, never a judgement
    import sys

    print(f"solforge: numba warm-up in the template failed ({type(exc).__name__}: {exc}); children compile cold",
          file=sys.stderr)
