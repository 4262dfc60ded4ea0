"""The template process's preload: imported once, by `multiprocessing`'s forkserver, in
the process every judge child is forked from (see `processes`). Only that process
imports this module.

It ties the template's life to the judge's (PR_SET_PDEATHSIG: the kernel sends SIGKILL
when the judge dies, by any signal), so that the template cannot outlive the judge;
each child then dies with the template by its own PR_SET_PDEATHSIG (`child`). It also
loads what every child needs (torch, numpy, numba, solforge's child code), once.
"""

from __future__ import annotations

import signal

from solforge.bench import child  # noqa: F401  (the heavy imports, once for every child)
from solforge.bench.child import tie_to_parent

tie_to_parent(signal.SIGKILL)
