"""One process-wide audit hook (PEP 578) that hands each audited event to the guards
that asked for it.

CPython calls every audit hook for every audited event, and some events are frequent:
`id()` raises `builtins.id`, and numba's compiler calls `id()` hundreds of thousands of
times per kernel (`copy.deepcopy` of its IR keeps a memo by id; ~215k events for one
PARALLEL seed, counted 2026-12-04). Each Python hook costs a call per event whether it
wants the event or not: with the guards armed, a process paid 1954-2163 ns per `id()`
when each of the four (`audit`, `watch`, `code_strings`, `launches`) had a hook of its
own, and pays 221-350 ns with this one (`benchmarks/audit_hook_cost.py`, the developer
machine). So the guards register here, each for the events it judges, and this module
installs the only hook.

A handler is called as `handler(event, args)` from `dispatch`, so the frame that raised
the event is `sys._getframe(CALLER_DEPTH)` in the handler (0 is the handler, 1 is
`dispatch`). Handlers run in the order they were added, as separate hooks would; one
that raises (a refused operation) stops the event there, as a hook that raises does.
Like any audit hook, the dispatcher cannot be removed once installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

Handler = Callable[[str, tuple], None]

CALLER_DEPTH = 2  # sys._getframe(CALLER_DEPTH) in a handler: the frame that raised the event

_HANDLERS: dict[str, tuple[Handler, ...]] = {}
_INSTALLED: list[bool] = []


def add(handler: Handler, events: Iterable[str]) -> None:
    """Call `handler(event, args)` for every audited event named in `events` (exact
    names, e.g. "open", "os.fork"), after the handlers added before it. Installs the
    process-wide hook on the first call. Adding the same handler for an event twice
    changes nothing. Raises nothing."""
    for event in events:
        handlers = _HANDLERS.get(event, ())
        if handler not in handlers:
            _HANDLERS[event] = (*handlers, handler)
    if not _INSTALLED:
        _INSTALLED.append(True)
        sys.addaudithook(dispatch)


def dispatch(event: str, args: tuple) -> None:
    """The audit hook: the handlers of `event`, in order; nothing for any other event."""
    handlers = _HANDLERS.get(event)
    if handlers is None:
        return
    for handler in handlers:
        handler(event, args)


def events_of(handler: Handler) -> frozenset[str]:
    """The events `handler` was added for (for tests and diagnostics)."""
    return frozenset(e for e, hs in _HANDLERS.items() if handler in hs)
