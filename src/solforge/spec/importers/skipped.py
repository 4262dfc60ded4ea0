"""The one exception every importer raises for a file or item it cannot import."""

from __future__ import annotations


class Unsupported(Exception):
    """A file or item that cannot be imported; the message is the one-line reason (the
    import report lists it as skipped with that reason)."""
