"""The root of the project's exceptions, and the errors of ``schemas/`` (settings and the event codec).

Every error Rewind raises on purpose derives from :class:`RewindError`, so a CLI or service
can catch one type and print a one-line message. Each package names its own subclasses in
its own ``errors`` module: :mod:`pipelines.errors` (brokers, topics, views),
:mod:`state.errors` (store, queries, replay, snapshots, swap), and the tools under
``scripts/`` next to the code that raises them (``scripts.kafka_local.errors``,
``scripts.workload``).
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
    "UpcastError",
    "RegistryUnavailableError",
    "ReplayGateError",
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


class UpcastError(CodecError):
    """An upcaster (``schemas/upcasters.py``) could not carry an old event to the newest shape.

    The message names the type, the two versions, the upcaster and the field it refused.
    """


class RegistryUnavailableError(RewindError):
    """The schema registry did not answer (refused, timed out) or answered an error.

    Check REWIND_SCHEMA_REGISTRY_URL (or --registry) and that the registry runs (`rewind registry status`).
    """


class ReplayGateError(RewindError):
    """A replay from offset zero was refused: a subject's compatibility level is not transitive.

    Set the subject (or the global level) to BACKWARD_TRANSITIVE or FULL_TRANSITIVE, or pass --force
    when you know every version ever written is still readable.
    """
