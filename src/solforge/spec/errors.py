"""The one exception type for bad user input to the data model."""

from __future__ import annotations


class SpecError(ValueError):
    """Bad input, worded as one line: `FILE: FIELD: what was expected`."""


def located(source: str | None, field: str | None, message: str) -> str:
    """Format one problem as `source: field: message`, leaving out the parts that are unknown."""
    parts = [p for p in (source, field) if p]
    return ": ".join([*parts, message])
