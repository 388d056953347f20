"""The project's exception hierarchy: one root, a few named subclasses.

Every error Rewind raises on purpose derives from :class:`RewindError`, so a
CLI or service can catch one type and print a one-line message.
"""

from __future__ import annotations

__all__ = [
    "RewindError",
    "ConfigError",
    "CodecError",
    "BadMagicError",
    "TruncatedEventError",
    "UnknownSchemaError",
    "EncodeError",
    "BrokerUnreachableError",
    "TopicError",
    "UnknownViewError",
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
]


class RewindError(Exception):
    """Root of every error Rewind raises deliberately."""


class ConfigError(RewindError):
    """A setting or CLI argument is invalid. Fix the argument or env var named in the message."""


class CodecError(RewindError):
    """Bytes could not be turned into an event (or back). The event is dead-lettered, never dropped."""


class BadMagicError(CodecError):
    """The bytes do not start with the Avro single-object marker 0xC3 0x01: not a Rewind event."""


class TruncatedEventError(CodecError):
    """The header or the Avro body ends early: the record was cut or corrupted in flight."""


class UnknownSchemaError(CodecError):
    """The schema fingerprint in the header is not one this build knows.

    A producer is newer than this consumer (deploy the new schema) or the bytes are garbage.
    """


class EncodeError(CodecError):
    """An event does not match its schema (missing field, wrong type); raised by the producer side."""


class BrokerUnreachableError(RewindError):
    """No Kafka broker answered at the bootstrap address within the deadline.

    Start one with `rewind kafka up`, or point KAFKA_BOOTSTRAP_SERVERS at a running cluster.
    """


class TopicError(RewindError):
    """A topic could not be created or has the wrong shape (e.g. partition count differs from the one asked for)."""


class UnknownViewError(RewindError):
    """The view name is not a known projection; the message lists the known ones."""


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
