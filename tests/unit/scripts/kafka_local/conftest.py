"""Shared fixture for the local-broker tests: a run dir and a jar dir under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import kafka_local as kl


@pytest.fixture
def paths(tmp_path: Path) -> kl.LocalKafkaPaths:
    return kl.LocalKafkaPaths(run_dir=tmp_path / "run", lib_dir=tmp_path / "lib")
