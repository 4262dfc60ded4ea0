"""Fixtures of the report tests: one synthetic run per session (see report_support), copied
by the tests that damage or change it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from report_support import synthetic_run


@pytest.fixture(scope="session")
def synthetic_master(tmp_path_factory) -> Path:
    return synthetic_run(tmp_path_factory.mktemp("synthetic-runs"))


@pytest.fixture
def run_copy(synthetic_master, tmp_path) -> Path:
    """A private copy of the synthetic run, under `tmp_path/runs/`."""
    target = tmp_path / "runs" / synthetic_master.name
    shutil.copytree(synthetic_master, target)
    return target
