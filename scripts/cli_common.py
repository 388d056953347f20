"""Shared CLI plumbing: settings options that show their env var, building the settings object, and argument checks.

Every command checks its arguments before its first side effect (a broker or registry contact,
a topic, a file, a process): a bad argument is one :class:`~schemas.errors.RewindError` line
(``scripts.cli.main`` prints it), never a traceback and never half a run. The checks here read
the file system and create nothing that outlives them.
"""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import typer
from pydantic import ValidationError

from pipelines.settings import ENV_VARS, RewindSettings
from schemas.errors import ConfigError
from state.errors import InvalidTimestampError
from state.query_args import parse_timestamp

__all__ = [
    "MIN_TIME_MS",
    "MAX_TIME_MS",
    "setting_option",
    "build_settings",
    "parse_time_arg",
    "check_dir",
    "check_new_dir",
    "check_file_target",
    "check_topic",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
#: Years 1 to 9999 in UTC, both inclusive (0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z): what
#: Python's datetime, hence every answer that shows a time as ISO-8601, can represent.
MIN_TIME_MS: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MS
MAX_TIME_MS: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MS
# Kafka's legal topic names (its Topic.validate): these characters, 1 to 249 of them, not "." or "..".
_TOPIC: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")


def setting_option(field: str, help_text: str, *param_decls: str, **kwargs: Any) -> Any:
    """A typer option bound to settings field ``field``: default None (fall back to env/default), env var shown in --help."""
    return typer.Option(None, *param_decls, help=help_text, envvar=ENV_VARS[field], show_envvar=True, **kwargs)


def build_settings(**overrides: Any) -> RewindSettings:
    """The frozen settings: CLI overrides (None = not given) over env vars over defaults.

    A bad value becomes a one-line :class:`ConfigError` naming the env var.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    # An empty cluster address would silently mean "no cluster: use (or start) the local broker".
    # Click ignores an empty env var, so an empty value here was typed on the command line.
    bootstrap = given.get("kafka_bootstrap_servers")
    if isinstance(bootstrap, str) and not bootstrap.strip():
        raise ConfigError(f"invalid kafka_bootstrap_servers ({ENV_VARS['kafka_bootstrap_servers']}): empty; "
                          "omit it to use the local broker")
    try:
        return RewindSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        # A value read from the environment is reported under its env var name: name the field.
        field = next((name for name, var in ENV_VARS.items() if var == field), field)
        env = ENV_VARS.get(field, field)
        raise ConfigError(f"invalid {field} ({env}): {first['msg']}") from exc


def parse_time_arg(flag: str, text: str) -> int:
    """Epoch ms of the time option ``flag``: ISO-8601 with a zone, or epoch ms, within MIN_TIME_MS..MAX_TIME_MS.

    One parser for every time the CLI takes (:func:`state.query_args.parse_timestamp`); anything
    else is an :class:`InvalidTimestampError` whose one line starts with ``flag``.
    """
    try:
        ms = parse_timestamp(text)
    except InvalidTimestampError as exc:
        raise InvalidTimestampError(f"{flag}: {exc}") from exc
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise InvalidTimestampError(
            f"{flag}: {text[:40]!r} is outside years 1-9999 ({MIN_TIME_MS} to {MAX_TIME_MS} epoch ms)"
        )
    return ms


def check_dir(flag: str, path: Path, *, writable: bool = True) -> Path:
    """``path`` if it is a directory this process can write in, or one it could create; :class:`ConfigError` otherwise.

    The nearest existing ancestor must be a directory; with ``writable`` (the default) a probe
    directory is made in it and removed at once, so nothing is left behind. A real attempt,
    because permission bits do not tell: root passes ``os.access`` everywhere, and /proc or a
    read-only mount refuse anyway. ``writable=False`` is for a directory only read from.
    """
    _check_dir(flag, path, path, writable=writable)
    return path


def check_new_dir(flag: str, path: Path) -> Path:
    """``path`` if it does not exist and could be created as a directory (see :func:`check_dir`); ConfigError otherwise."""
    _check_dir(flag, path, path.parent, writable=True, absent=True)
    return path


def check_file_target(flag: str, path: Path) -> Path:
    """``path`` if a file could be written there (not a directory, its directory writable or creatable); ConfigError otherwise."""
    _check_dir(flag, path, path.parent, writable=True, not_dir=True)
    return path


def _check_dir(flag: str, given: Path, directory: Path, *, writable: bool, absent: bool = False, not_dir: bool = False) -> None:
    """The checks of the three functions above; messages name ``flag`` and the path as ``given``."""
    shown = repr(str(given))
    try:
        if absent and (given.exists() or given.is_symlink()):
            raise ConfigError(f"{flag} {shown}: exists; give a new directory")
        if not_dir and given.is_dir():
            raise ConfigError(f"{flag} {shown}: is a directory; give a file path")
        existing = next(p for p in (directory.absolute(), *directory.absolute().parents) if p.exists())
        if not existing.is_dir():
            what = "not a directory" if existing == given.absolute() else f"{str(existing)!r} is not a directory"
            raise ConfigError(f"{flag} {shown}: {what}")
        if writable:
            Path(tempfile.mkdtemp(prefix=".rewind-probe-", dir=existing)).rmdir()
    except OSError as exc:  # the probe failed, or the path cannot even be looked at (name too long, a symlink loop)
        raise ConfigError(f"{flag} {shown}: cannot write there ({exc.strerror or exc})") from exc


def check_topic(flag: str, name: str) -> str:
    """``name`` if Kafka accepts it as a topic name; :class:`ConfigError` otherwise (before any broker contact)."""
    if not _TOPIC.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{flag} {name[:60]!r}: not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")
    return name
