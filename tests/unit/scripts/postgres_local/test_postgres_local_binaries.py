"""Finding PostgreSQL 15's programs: a dir with initdb, pg_ctl and a postgres that says it is 15."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import postgres_local as pl


def _fake_bindir(root: Path, version_line: str) -> Path:
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    for name in ("initdb", "pg_ctl"):
        (bindir / name).write_text("#!/bin/sh\nexit 0\n")
        (bindir / name).chmod(0o755)
    (bindir / "postgres").write_text(f"#!/bin/sh\necho '{version_line}'\n")
    (bindir / "postgres").chmod(0o755)
    return bindir


def test_a_dir_with_postgresql_15_is_found(tmp_path: Path) -> None:
    bindir = _fake_bindir(tmp_path, "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")
    found = pl.find_binaries([tmp_path / "missing", bindir])
    assert found == pl.PostgresBinaries(bindir=bindir, version="15.18")
    assert (found.initdb, found.pg_ctl, found.postgres) == (str(bindir / "initdb"), str(bindir / "pg_ctl"), str(bindir / "postgres"))


def test_another_major_version_is_skipped_and_named(tmp_path: Path) -> None:
    bindir = _fake_bindir(tmp_path, "postgres (PostgreSQL) 16.4")
    with pytest.raises(pl.PostgresLocalError, match=r"PostgreSQL 15 server programs not found .*postgres 16\.4.*ensure-postgres\.sh"):
        pl.find_binaries([bindir])


def test_no_programs_says_where_it_looked_and_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(pl.PostgresLocalError) as excinfo:
        pl.find_binaries([tmp_path / "nothing"])
    message = str(excinfo.value)
    assert "\n" not in message
    assert f"{tmp_path / 'nothing'}: no initdb/pg_ctl/postgres" in message
    assert "scripts/ensure-postgres.sh" in message and "apt-get install postgresql-15" in message
