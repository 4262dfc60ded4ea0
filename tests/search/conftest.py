"""Fixtures of the search tests: one calibration cache for the whole session, so the CPU is
calibrated once (a search needs its peaks), not once per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """SOLFORGE_CACHE_DIR for this session (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("solforge-cache")
    old = os.environ.get("SOLFORGE_CACHE_DIR")
    os.environ["SOLFORGE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SOLFORGE_CACHE_DIR", None)
    else:
        os.environ["SOLFORGE_CACHE_DIR"] = old
