"""The server's command-line settings and initdb's arguments."""

from __future__ import annotations

import shlex
from pathlib import Path

from scripts import postgres_local as pl


def test_every_server_listens_on_loopback_only_with_modest_memory_and_fsync_on(paths: pl.LocalPostgresPaths) -> None:
    settings = dict(pl.server_settings(port=15432, paths=paths))
    assert settings == {
        "port": "15432",
        "unix_socket_directories": str(paths.data_dir),
        "listen_addresses": "127.0.0.1",
        "shared_buffers": "64MB",
        "max_connections": "100",
    }
    assert "fsync" not in settings  # PostgreSQL's default, on: the main server must survive a crash


def test_only_a_test_server_runs_without_fsync(paths: pl.LocalPostgresPaths) -> None:
    assert dict(pl.server_settings(port=25432, paths=paths, fsync=False))["fsync"] == "off"


def test_a_socket_path_too_long_means_no_socket_not_the_system_one(tmp_path: Path) -> None:
    paths = pl.LocalPostgresPaths(run_dir=tmp_path / ("x" * 120))
    assert dict(pl.server_settings(port=15432, paths=paths))["unix_socket_directories"] == ""


def test_options_survive_the_shell_pg_ctl_hands_them_to(tmp_path: Path) -> None:
    """Scenario: a run dir with a space and a quote in its path. We expect /bin/sh to split the options back exactly."""
    paths = pl.LocalPostgresPaths(run_dir=tmp_path / "my 'pg' dir")
    options = pl.server_options(port=15432, paths=paths)
    words = shlex.split(options)
    assert words[0::2] == ["-c"] * (len(words) // 2)
    assert f"unix_socket_directories={paths.data_dir}" in words[1::2]
    assert "listen_addresses=127.0.0.1" in words[1::2]


def test_initdb_makes_a_trust_cluster_for_postgres_in_utf8_whatever_the_locale() -> None:
    assert pl.initdb_args("/x/data") == ["-D", "/x/data", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]
