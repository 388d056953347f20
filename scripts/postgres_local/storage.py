"""The data dir: checked before every start, initialised once with initdb (into a staging dir, then renamed)."""

from __future__ import annotations

import shutil
from pathlib import Path

from scripts.postgres_local.binaries import PostgresBinaries
from scripts.postgres_local.config import initdb_args
from scripts.postgres_local.errors import PostgresLocalError
from scripts.postgres_local.paths import PG_MAJOR, LocalPostgresPaths
from scripts.postgres_local.process import ServiceUser, can_write, run_as

_INITDB_TIMEOUT_S = 300.0
_STAGING_NAME = "data.initdb"

__all__ = ["_check_data_dir", "_init_once"]


def _check_data_dir(paths: LocalPostgresPaths, user: ServiceUser) -> bool:
    """Whether the data dir holds a PostgreSQL 15 cluster that ``user`` owns; False when there is none yet.

    Raises PostgresLocalError, saying what to do, for a data dir that is not a
    directory, holds another major version's cluster or something else, or
    belongs to another user (PostgreSQL would refuse it).
    """
    data = paths.data_dir
    try:
        if data.is_symlink() or (data.exists() and not data.is_dir()):
            raise PostgresLocalError(f"data dir {data} is not a directory: move it away and run up again")
        if not data.exists():
            return False
        if not paths.version_file.is_file():
            if any(data.iterdir()):
                raise PostgresLocalError(
                    f"data dir {data} holds no PostgreSQL cluster (no PG_VERSION) but is not empty: move it away and run up again"
                )
            data.rmdir()  # empty: initdb makes it again
            return False
        version = paths.version_file.read_text().strip()
        owner = data.stat().st_uid
    except OSError as exc:
        raise PostgresLocalError(f"data dir {data} is not usable ({exc.strerror or exc}): fix its permissions or choose another run dir") from exc
    if version != PG_MAJOR:
        raise PostgresLocalError(
            f"data dir {data} was initialised by PostgreSQL {version}, and this runs PostgreSQL {PG_MAJOR}: "
            f"move it away (or choose another run dir) and run up again"
        )
    if owner != user.uid:
        raise PostgresLocalError(
            f"data dir {data} belongs to uid {owner}, but the server runs as {user.name} (uid {user.uid}): "
            f"`chown -R {user.name} {data}`, or move it away"
        )
    return True


def _init_once(paths: LocalPostgresPaths, binaries: PostgresBinaries, user: ServiceUser) -> bool:
    """Initialise the data dir unless it holds a cluster already; True if this call made one.

    Steps:
    1. Check the data dir (see ``_check_data_dir``); done if it holds a cluster.
    2. Make an empty staging dir next to it, mode 0700, owned by ``user``,
       and check that ``user`` can write there (for root: that every dir above
       it lets the postgres user through).
    3. ``initdb`` into the staging dir as ``user``.
    4. Rename the staging dir to ``data``: a failed or interrupted initdb
       never leaves a half-made cluster where the server would look.
    The staging dir is removed when any step fails.
    """
    # Step 1
    if _check_data_dir(paths, user):
        return False
    staging = paths.run_dir / _STAGING_NAME
    try:
        # Step 2
        _remove(staging)  # left by an interrupted earlier run
        staging.mkdir(mode=0o700)
        user.owns(staging)
        if not can_write(user, staging, cwd=paths.run_dir):
            raise PostgresLocalError(
                f"the {user.name} OS user cannot write to {staging}: every dir above the run dir must let it through "
                f"(chmod o+x; /root and pytest's /tmp/pytest-of-root do not): choose another run dir"
            )
        # Step 3
        run_as(user, [binaries.initdb, *initdb_args(str(staging))], cwd=paths.run_dir, timeout_s=_INITDB_TIMEOUT_S, what="initdb")
        # Step 4
        staging.rename(paths.data_dir)
    except OSError as exc:
        _remove(staging)
        raise PostgresLocalError(f"could not initialise {paths.data_dir} ({exc.strerror or exc}): choose another run dir") from exc
    except PostgresLocalError:
        _remove(staging)
        raise
    return True


def _remove(path: Path) -> None:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
