"""A host-memory limit on a solution's process: a memory cgroup where one can be made,
else an address-space limit.

`MemoryLimit.apply(pid, limit_bytes)` puts the process in a memory cgroup of its own
(cgroup v2: `memory.max`; v1: `memory.limit_in_bytes`; either way a child of the
judge's own cgroup), so that a solution that grows past the limit is killed
by the kernel's out-of-memory killer (SIGKILL) and only it: the judge and the next
solution are untouched. Creating a cgroup needs write access to the cgroup filesystem
(root, or a delegated subtree). Where that is not possible it falls back to
RLIMIT_AS (`resource.prlimit`): allocations past the limit then fail (an exception in
the solution) instead of a kill. `oom_killed()` tells, after the process died, whether
the out-of-memory killer did it (cgroup only). Linux only; elsewhere `apply` does
nothing and says so.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroup_v2() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return CGROUP_ROOT / line[3:].lstrip("/")
    except OSError:
        return None
    return None


def _memory_v1_parent() -> Path | None:
    """This process's own memory cgroup (v1), under which the judge makes one per child,
    so that a child stays inside any limit the judge itself is under."""
    root = CGROUP_ROOT / "memory"
    if not (root / "memory.limit_in_bytes").exists():
        return None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                group = root / path.lstrip("/")
                return group if group.is_dir() else None
    except (OSError, ValueError):
        return None
    return None


@dataclass
class MemoryLimit:
    """The limit put on one process: `how` is 'cgroup-v2', 'cgroup-v1', 'rlimit' or 'none'."""

    how: str
    limit_bytes: int
    path: Path | None = None

    @classmethod
    def apply(cls, pid: int, limit_bytes: int) -> MemoryLimit:
        name = f"solforge-{pid}"
        v1 = _memory_v1_parent()
        if v1 is not None:
            group = v1 / name
            with contextlib.suppress(OSError):
                group.mkdir()
                (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):  # no swap accounting on some kernels
                    (group / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
                (group / "cgroup.procs").write_text(str(pid))
                return cls("cgroup-v1", limit_bytes, group)
            with contextlib.suppress(OSError):
                group.rmdir()
        own = _own_cgroup_v2()
        if own is not None and (CGROUP_ROOT / "cgroup.controllers").exists():
            group = own / name
            with contextlib.suppress(OSError):
                group.mkdir()
                (group / "memory.max").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):
                    (group / "memory.swap.max").write_text("0")
                (group / "cgroup.procs").write_text(str(pid))
                return cls("cgroup-v2", limit_bytes, group)
            with contextlib.suppress(OSError):
                group.rmdir()
        try:
            import resource

            resource.prlimit(pid, resource.RLIMIT_AS, (limit_bytes, limit_bytes))
            return cls("rlimit", limit_bytes)
        except (ImportError, OSError, ValueError, AttributeError):
            return cls("none", limit_bytes)

    def oom_killed(self) -> bool:
        """Whether the out-of-memory killer acted in this cgroup."""
        if self.path is None:
            return False
        try:
            if self.how == "cgroup-v1":
                text = (self.path / "memory.oom_control").read_text()
                return any(line.split()[-1] != "0" for line in text.splitlines() if line.startswith("oom_kill "))
            text = (self.path / "memory.events").read_text()
            return any(line.split()[-1] != "0" for line in text.splitlines() if line.startswith("oom_kill "))
        except OSError:
            return False

    def describe(self) -> str:
        return f"{self.limit_bytes / 2**30:.2f} GiB ({self.how})"

    def release(self) -> None:
        """Remove the cgroup (once its process is gone)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            self.path = None


def can_kill_at_a_limit() -> bool:
    """Whether this machine lets the judge make memory cgroups (so a limit means a real
    out-of-memory kill, not a failed allocation)."""
    v1 = _memory_v1_parent()
    if v1 is not None:
        return os.access(v1, os.W_OK)
    own = _own_cgroup_v2()
    if own is None or not (own / "cgroup.subtree_control").exists():
        return False
    try:
        return os.access(own, os.W_OK) and "memory" in (own / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
