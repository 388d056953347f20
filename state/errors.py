"""The errors of ``state/``: the view store, queries, replay, snapshots and the swap.

All derive from :class:`~schemas.errors.RewindError`.
"""

from __future__ import annotations

from schemas.errors import RewindError

__all__ = [
    "StoreError",
    "StoreNotFoundError",
    "StoreFormatError",
    "InvalidUpdateError",
    "QueryError",
    "KeyNotFoundError",
    "UnknownIndexError",
    "InvalidTimestampError",
    "InvalidPositionError",
    "ReplicaBehindError",
    "QueryServerError",
    "ReplayError",
    "ReplayInterruptedError",
    "SnapshotError",
    "SwapError",
]


class StoreError(RewindError):
    """The read replica's RocksDB store could not be opened, read or written (the message says which directory)."""


class StoreNotFoundError(StoreError):
    """A read-only open found no store in the directory.

    Start `rewind serve` (it builds the replica) or point --replica-dir / REWIND_REPLICA_DIR at an existing one.
    """


class StoreFormatError(StoreError):
    """The directory holds a store written in another key/value format version.

    Rebuild it: delete the directory and let `rewind serve` (or a replay) fill a new one.
    """


class InvalidUpdateError(StoreError):
    """A ViewUpdate breaks the store contract (a counter change without delta, a key longer than 65535 bytes).

    Raised before anything of the batch is written; fix the producer of the update.
    """


class QueryError(RewindError):
    """A query was refused. Subclasses say why; the HTTP API maps each to a status code, the CLI to one line."""


class KeyNotFoundError(QueryError):
    """The view holds no row for the key (as of the asked time). HTTP 404."""


class UnknownIndexError(QueryError):
    """The view has no such secondary index, or an equality index was asked without a value. HTTP 422; the message lists the indexes."""


class InvalidTimestampError(QueryError):
    """A timestamp is neither ISO-8601 with a zone (Z or +hh:mm) nor epoch milliseconds. HTTP 422."""


class InvalidPositionError(QueryError):
    """A min_position is malformed: use ``topic:partition:offset[,...]`` or a JSON object. HTTP 422."""


class ReplicaBehindError(QueryError):
    """The replica did not reach the asked min_position within wait_ms. HTTP 503.

    ``behind`` says by how many offsets, per topic and partition; retry later or with a larger wait_ms.
    """

    def __init__(self, message: str, *, behind: dict[str, dict[int, int]]) -> None:
        super().__init__(message)
        self.behind = behind


class QueryServerError(QueryError):
    """A query server (``--url``) could not be reached or answered with an error the CLI does not know."""


class ReplayError(RewindError):
    """A replay could not run or finish: a worker failed, the orders topic is missing or has
    changed shape, or the output directory is unusable. The served view is untouched; fix the
    cause named in the message and run the replay again (it starts over, a partial build is removed)."""


class ReplayInterruptedError(ReplayError):
    """The replay was stopped by SIGINT/SIGTERM. The partial build was removed and the served view is
    untouched; nothing to clean up, run it again when convenient."""


class SnapshotError(RewindError):
    """A snapshot could not be written or read (the source view is incomplete, e.g. an as-of replay
    that cut orders, or its manifest is missing or corrupt). Take a snapshot of a full replay, or
    use ``rewind snapshot NAME --at T``."""


class SwapError(RewindError):
    """The atomic swap of a served view directory failed or was refused (target exists, not a
    replay output, different filesystem). The previously served view is still the served one."""
