"""Order event schemas (Avro), their registry and the single-object codec."""

from schemas.codec import Event, EventCodec
from schemas.errors import (
    BadMagicError,
    CodecError,
    ConfigError,
    EncodeError,
    RewindError,
    TruncatedEventError,
    UnknownSchemaError,
)
from schemas.registry import EVENT_TYPES, EventSchema, SchemaRegistry, load_registry

__all__ = [
    "Event",
    "EventCodec",
    "EVENT_TYPES",
    "EventSchema",
    "SchemaRegistry",
    "load_registry",
    "RewindError",
    "ConfigError",
    "CodecError",
    "BadMagicError",
    "TruncatedEventError",
    "UnknownSchemaError",
    "EncodeError",
]
