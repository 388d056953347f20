"""Where the local server keeps its files, and the URL `up` hands out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scripts import postgres_local as pl
from scripts.postgres_local.process import _running_port

PROJECT_ROOT = Path(__file__).resolve().parents[4]


def test_default_run_dir_is_in_the_project_and_the_pid_file_is_postgres_own() -> None:
    paths = pl.LocalPostgresPaths()
    assert paths.run_dir == PROJECT_ROOT / ".run" / "pg"
    assert paths.data_dir == paths.run_dir / "data"
    assert paths.pid_file == paths.run_dir / "data" / "postmaster.pid"
    assert paths.log_file == paths.run_dir / "postgres.log"
    assert paths.lock_file == paths.run_dir / ".lock"


def test_paths_are_absolute_and_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = pl.LocalPostgresPaths(run_dir=Path("rel/pg"))
    assert paths.run_dir == tmp_path.resolve() / "rel" / "pg"
    with pytest.raises(dataclasses.FrozenInstanceError):
        paths.run_dir = tmp_path  # type: ignore[misc]  # the frozen dataclass must refuse this


def test_database_url_is_a_sqlalchemy_psycopg_url_on_loopback() -> None:
    assert pl.database_url(15432) == "postgresql+psycopg://postgres@127.0.0.1:15432/rewind"
    assert pl.database_url(25432, "t_0123abcd") == "postgresql+psycopg://postgres@127.0.0.1:25432/t_0123abcd"


def test_the_socket_goes_in_the_data_dir_unless_its_path_is_too_long(tmp_path: Path) -> None:
    """Scenario: a short and a very long run dir. We expect the socket in the data dir, then no socket (TCP only)."""
    short = pl.LocalPostgresPaths(run_dir=tmp_path / "pg")
    assert short.socket_dir(15432) == short.data_dir
    long = pl.LocalPostgresPaths(run_dir=tmp_path / ("x" * 120))
    assert long.socket_dir(15432) is None


def test_the_running_port_is_read_from_postmaster_pid(paths: pl.LocalPostgresPaths) -> None:
    """Scenario: PostgreSQL 15's postmaster.pid (pid, data dir, start time, port, ...). We expect its fourth line."""
    assert _running_port(paths) is None
    paths.data_dir.mkdir(parents=True)
    paths.pid_file.write_text(f"4242\n{paths.data_dir}\n1796183694\n15499\n{paths.data_dir}\n127.0.0.1\n  5357912  4\nready   \n")
    assert _running_port(paths) == 15499
