"""Where solforge keeps what it can rebuild: calibrated ceilings, the knowledge index.

One rule for every package that caches: `$SOLFORGE_CACHE_DIR` when it is set and not
empty, else platformdirs' per-user cache directory for "solforge" (on Linux
`$XDG_CACHE_HOME/solforge`, by default `~/.cache/solforge`). Each package keeps its own
subfolder below it (`ceilings/`, `knowledge/`). Tests point the variable at a temporary
folder so they never read or write a user's cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache root: `$SOLFORGE_CACHE_DIR`, else `platformdirs.user_cache_dir("solforge")`.

    The folder is not created here; writers create their subfolder when they first write.
    Raises nothing of its own.
    """
    override = os.environ.get("SOLFORGE_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("solforge"))
