"""The closed set of guard names, shared by every guard module."""

from __future__ import annotations

import enum

from solforge.spec import GuardFinding


class Guard(str, enum.Enum):
    """Stable names of the reward-hack guards, as written in `GuardFinding.guard`."""

    FORBIDDEN_CALL = "forbidden-call"
    THREAD_OR_PROCESS = "thread-or-process"
    TIMER_PATCH = "timer-patch"
    HARNESS_TAMPER = "harness-tamper"
    SIDE_STREAM = "side-stream"
    LAZY_OUTPUT = "lazy-output"
    CACHING = "caching"
    DECOY = "decoy"
    INTROSPECTION = "introspection"
    OUTSIDE_CALL = "outside-call"
    FORGED_REPLY = "forged-reply"
    NETWORK = "network"
    FILESYSTEM = "filesystem"


def finding(guard: Guard, message: str) -> GuardFinding:
    """A GuardFinding under one of the stable guard names."""
    return GuardFinding(guard=guard.value, message=message)


def dedupe(findings: list[GuardFinding]) -> list[GuardFinding]:
    """The findings in their first order, each (guard, message) once."""
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        if (f.guard, f.message) not in seen:
            seen.add((f.guard, f.message))
            out.append(f)
    return out
