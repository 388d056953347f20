"""The server's settings, passed on its command line (so ``ps`` and ``postmaster.pid``'s owner show them), and initdb's."""

from __future__ import annotations

import shlex

from scripts.postgres_local.paths import HOST, SUPERUSER, LocalPostgresPaths

#: Settings for every server started here: loopback only, modest memory on a 2-core machine.
_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("listen_addresses", HOST, "loopback only: nothing outside this machine can reach it"),
    ("shared_buffers", "64MB", "default 128MB; the event store is small"),
    ("max_connections", "100", "the default, stated: each service instance keeps a small pool"),
)
#: Only for a throwaway test server (``fsync=False``): commits still reach the OS before they
#: return, so killing the server (or a client) loses nothing; only an OS crash or power loss would.
_NO_FSYNC = ("fsync", "off")


def initdb_args(target: str) -> list[str]:
    """Arguments of ``initdb`` (after the program) for a cluster in ``target``.

    Trust authentication (loopback only, see ``_SETTINGS``), superuser
    ``postgres``, UTF-8 with the C locale whatever the caller's LANG (which
    could otherwise give SQL_ASCII).
    """
    return ["-D", target, "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C"]


def server_settings(*, port: int, paths: LocalPostgresPaths, fsync: bool = True) -> list[tuple[str, str]]:
    """``(name, value)`` of every setting the server is started with, port and socket dir included."""
    socket_dir = paths.socket_dir(port)
    settings = [
        ("port", str(port)),
        # No socket dir: the server would use /var/run/postgresql, a system cluster's; '' means none.
        ("unix_socket_directories", str(socket_dir) if socket_dir is not None else ""),
        *((name, value) for name, value, _ in _SETTINGS),
    ]
    if not fsync:
        settings.append(_NO_FSYNC)
    return settings


def server_options(*, port: int, paths: LocalPostgresPaths, fsync: bool = True) -> str:
    """pg_ctl's ``-o`` string: ``-c name=value`` for each setting, each shell-quoted.

    pg_ctl hands this string to ``/bin/sh`` as part of the server's command
    line, so a run dir with spaces or quotes in its path must be quoted.
    """
    return " ".join(f"-c {shlex.quote(f'{name}={value}')}" for name, value in server_settings(port=port, paths=paths, fsync=fsync))
