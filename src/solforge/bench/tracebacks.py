"""Tracebacks for a trace's log: the solution's frames, not the harness's."""

from __future__ import annotations

import os
import traceback

_HARNESS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def format_exception(exc: BaseException, frames: int = 10) -> str:
    """`Type: message`, then the last `frames` frames of the traceback outside the
    harness (all of them when every frame is the harness's)."""
    stack = traceback.extract_tb(exc.__traceback__)
    outside = [f for f in stack if not os.path.abspath(f.filename).startswith(_HARNESS_DIR)] or stack
    text = "".join(traceback.format_list(outside[-frames:])).rstrip()
    return f"{type(exc).__name__}: {exc}" + (f"\n{text}" if text else "")
