"""Finding PostgreSQL 15's server programs (initdb, pg_ctl, postgres) on this machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.postgres_local.errors import PostgresLocalError
from scripts.postgres_local.paths import PG_MAJOR

#: Where Debian and Ubuntu's postgresql-15 package puts them; `pg_config --bindir` is asked next.
DEBIAN_BINDIR = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_VERSION_TIMEOUT_S = 10.0

__all__ = ["DEBIAN_BINDIR", "PostgresBinaries", "find_binaries"]


@dataclass(frozen=True)
class PostgresBinaries:
    """One installation's server programs, and the version ``postgres --version`` reported."""

    bindir: Path
    version: str

    @property
    def initdb(self) -> str:
        return str(self.bindir / "initdb")

    @property
    def pg_ctl(self) -> str:
        return str(self.bindir / "pg_ctl")

    @property
    def postgres(self) -> str:
        return str(self.bindir / "postgres")


def find_binaries(candidates: Sequence[Path] | None = None) -> PostgresBinaries:
    """The first dir of ``candidates`` that holds initdb, pg_ctl and a PostgreSQL 15 ``postgres``.

    ``candidates`` defaults to ``/usr/lib/postgresql/15/bin``, then what
    ``pg_config --bindir`` says (it may name another major version, which is
    skipped). Raises PostgresLocalError naming where it looked and how to install
    them; ``scripts/ensure-postgres.sh`` (sourced by scripts/main.sh and
    scripts/test.sh) applies the same rule.
    """
    dirs = list(candidates) if candidates is not None else [DEBIAN_BINDIR, *_pg_config_bindir()]
    seen: list[str] = []
    for bindir in dirs:
        if not all((bindir / name).is_file() for name in _PROGRAMS):
            seen.append(f"{bindir}: no initdb/pg_ctl/postgres")
            continue
        version = _version(bindir / "postgres")
        if version is None or version.split(".")[0] != PG_MAJOR:
            seen.append(f"{bindir}: postgres {version or 'of unknown version'}")
            continue
        return PostgresBinaries(bindir=bindir, version=version)
    looked = "; ".join(seen) or "nowhere"
    raise PostgresLocalError(
        f"PostgreSQL {PG_MAJOR} server programs not found ({looked}): run scripts/ensure-postgres.sh "
        f"or `apt-get install postgresql-{PG_MAJOR}`"
    )


def _pg_config_bindir() -> list[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return []
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=_VERSION_TIMEOUT_S, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [Path(out)] if out else []


def _version(postgres: Path) -> str | None:
    """``15.18`` from ``postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)``; None if it does not say."""
    try:
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=_VERSION_TIMEOUT_S, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION_RE.search(out)
    if match is None:
        return None
    return match.group(1) if match.group(2) is None else f"{match.group(1)}.{match.group(2)}"
