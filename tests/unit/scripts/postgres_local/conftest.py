"""Shared fixture for the local-PostgreSQL tests: a run dir under tmp_path (no server is ever started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import postgres_local as pl


@pytest.fixture
def paths(tmp_path: Path) -> pl.LocalPostgresPaths:
    return pl.LocalPostgresPaths(run_dir=tmp_path / "run")
