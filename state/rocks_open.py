"""Opening a RocksDB directory with rocksdict, the same way for every store in ``state/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

from rocksdict import AccessType, Options, Rdict, WriteOptions

from schemas.errors import RewindError

__all__ = ["open_rdict", "raw_items", "write_options"]


def open_rdict(path: Path, options: Options, *, read_only: bool, error: type[RewindError], what: str) -> Rdict:
    """Open ``path`` read-write (creating it) or read-only (no lock, so another process may write).

    rocksdict raises a plain Exception carrying RocksDB's message; it becomes ``error``
    with ``what`` naming the store, so callers keep their own error type.
    """
    try:
        if read_only:
            return Rdict(str(path), options, access_type=AccessType.read_only(False))
        path.mkdir(parents=True, exist_ok=True)
        return Rdict(str(path), options)
    except Exception as exc:  # rocksdict raises a plain Exception, see the docstring
        raise error(f"cannot open {what} {path}: {exc}") from exc


def write_options(*, wal: bool) -> WriteOptions:
    """Write options with RocksDB's write-ahead log on or off (off: the data is lost unless flushed)."""
    options = WriteOptions()
    options.disable_wal = not wal  # type: ignore[method-assign, assignment]  # rocksdict's stub declares a method; it is a bool property
    return options


def raw_items(db: Rdict, *, from_key: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``db.items(from_key=...)`` of a raw-mode database, typed: its keys and values are bytes.

    rocksdict's stub types every key as ``str | int | float | bytes | bool``; this returns
    the very same iterator (no wrapper on the hot path), with the type raw mode guarantees.
    """
    return cast("Iterator[tuple[bytes, bytes]]", db.items(from_key=from_key))
