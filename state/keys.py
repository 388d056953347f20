"""The one place that encodes RocksDB keys of the read replica, and names its key spaces.

Every key starts with a one-byte namespace (the store uses key prefixes, not column
families, so a single WriteBatch and a single iterator cover everything). Integers are
big-endian and order-preserving, so byte order is numeric order:

* event times and other signed ints: ``u64(value + 2**63)`` (the sign bit flipped);
* ranking values, newest/largest first: the complement of the above (:func:`enc_desc`).

Strings are length-prefixed (``u16`` big-endian length, then UTF-8 bytes), so a key
that is a prefix of another key can never be confused with it.

Layout (``lp(x)`` = length-prefixed, ``t`` = :func:`enc_int`, ``d`` = :func:`enc_desc`)::

    M lp(name)                                 -> metadata (format version)
    P lp(topic) u32(partition)                 -> u64 next_offset        (the store's position)
    S lp(view) lp(topic) u32(partition)        -> u64 next_offset        (per view: orders records seen)
    L lp(view) lp(key)                         -> t(valid_from) + version record (the current version)
    V lp(view) lp(key) t(valid_from)           -> version record         (every version)
    C lp(view) lp(key) t(change_valid_from) lp(orderId) u64(seq) -> change record (counter views)
    X lp(view) lp(index) lp(value) t(valid_from) lp(key)        -> b""   (current, equality index)
    X lp(view) lp(index) d(value) lp(key)                       -> b""   (current, ranking index)
    I lp(view) lp(index) lp(value) t(valid_to or MAX) lp(key)   -> t(valid_from)        (versioned, equality)
    I lp(view) lp(index) d(value) lp(key) t(valid_from)         -> t(valid_to) or b""  (versioned, ranking)

"row K as of T" is one ``seek_for_prev(V lp(view) lp(K) t(T))``: the greatest version key
at or below it is the version with the greatest valid_from <= T, if it still has K's prefix.
"""

from __future__ import annotations

import struct
from typing import Final

from state.errors import InvalidUpdateError

__all__ = [
    "NS_META",
    "NS_POSITION",
    "NS_SOURCE_POSITION",
    "NS_LATEST",
    "NS_VERSION",
    "NS_CHANGE",
    "NS_INDEX_CURRENT",
    "NS_INDEX_VERSIONED",
    "META_FORMAT",
    "FORMAT_VERSION",
    "INT_BYTES",
    "OPEN_END_MS",
    "enc_int",
    "dec_int",
    "enc_desc",
    "dec_desc",
    "lp",
    "lp_name",
    "read_lp",
    "prefix_end",
    "position_key",
    "parse_position_key",
    "source_position_key",
    "parse_source_position_key",
    "latest_key",
    "version_prefix",
    "version_key",
    "change_prefix",
    "change_key",
    "parse_change_key",
    "index_prefix",
    "equality_value_prefix",
    "current_equality_key",
    "current_ranking_key",
    "versioned_equality_key",
    "versioned_ranking_key",
]

# Reserved names: one byte per key space, and the metadata keys. Nothing else in the
# code base may invent a prefix.
NS_META: Final = b"M"
NS_POSITION: Final = b"P"
NS_SOURCE_POSITION: Final = b"S"
NS_LATEST: Final = b"L"
NS_VERSION: Final = b"V"
NS_CHANGE: Final = b"C"
NS_INDEX_CURRENT: Final = b"X"
NS_INDEX_VERSIONED: Final = b"I"

META_FORMAT: Final = "format"
#: Bump when any layout above changes; a store of another version refuses to open.
FORMAT_VERSION: Final = b"2"

INT_BYTES: Final = 8
_SIGN: Final = 1 << 63
_U64_MAX: Final = (1 << 64) - 1
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DESC_BASE: Final = _U64_MAX - _SIGN


_pack_u64 = _U64.pack
_pack_u16 = _U16.pack


def enc_int(value: int) -> bytes:
    """Signed 64-bit int -> 8 bytes whose byte order is numeric order."""
    try:
        # struct checks the range itself (0 <= value + 2**63 < 2**64): the hot path does one call.
        return _pack_u64(value + _SIGN)
    except struct.error:
        if not -_SIGN <= value < _SIGN:
            raise InvalidUpdateError(f"integer {value} does not fit in 64 bits") from None
        raise


def dec_int(data: bytes) -> int:
    """Inverse of :func:`enc_int`."""
    unsigned: int = _U64.unpack(data)[0]
    return unsigned - _SIGN


def enc_desc(value: int) -> bytes:
    """Signed 64-bit int -> 8 bytes whose byte order is *descending* numeric order (ranking indexes)."""
    try:
        # == U64_MAX - (value + 2**63); the range check is struct's, as in enc_int.
        return _pack_u64(_DESC_BASE - value)
    except struct.error:
        enc_int(value)  # raises InvalidUpdateError when out of range
        raise


def dec_desc(data: bytes) -> int:
    """Inverse of :func:`enc_desc`."""
    unsigned: int = _U64.unpack(data)[0]
    return (_U64_MAX - unsigned) - _SIGN


def lp(text: str) -> bytes:
    """Length-prefixed UTF-8: u16 big-endian length, then the bytes."""
    raw = text.encode()
    size = len(raw)
    if size > 0xFFFF:
        raise InvalidUpdateError(f"key part of {size} bytes is longer than 65535: {text[:40]!r}...")
    return _pack_u16(size) + raw


_LP_NAMES: dict[str, bytes] = {}


def lp_name(text: str) -> bytes:
    """:func:`lp` of a name from a small fixed set (views, indexes, topics, index values): cached."""
    found = _LP_NAMES.get(text)
    if found is None:
        found = lp(text)
        if len(_LP_NAMES) < 4096:  # bounded: index values come from rows
            _LP_NAMES[text] = found
    return found


def read_lp(data: bytes, at: int) -> tuple[str, int]:
    """Decode a length-prefixed string at offset ``at``; returns it and the offset after it."""
    (size,) = _U16.unpack_from(data, at)
    end = at + 2 + size
    return data[at + 2 : end].decode(), end


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (exclusive upper bound).

    Every prefix here starts with a namespace byte, so it is never all 0xFF (which has no bound).
    """
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        raise ValueError("a prefix of only 0xFF bytes has no upper bound")
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def position_key(topic: str, partition: int) -> bytes:
    """Key of the store's next_offset for one input topic-partition."""
    return NS_POSITION + lp(topic) + _U32.pack(partition)


def parse_position_key(key: bytes) -> tuple[str, int]:
    """(topic, partition) of a :func:`position_key`."""
    topic, at = read_lp(key, 1)
    return topic, _U32.unpack_from(key, at)[0]


def source_position_key(view: str, topic: str, partition: int) -> bytes:
    """Key of a view's highest orders-topic next_offset seen, per source partition."""
    return NS_SOURCE_POSITION + lp(view) + lp(topic) + _U32.pack(partition)


def parse_source_position_key(key: bytes) -> tuple[str, str, int]:
    """(view, topic, partition) of a :func:`source_position_key`."""
    view, at = read_lp(key, 1)
    topic, at = read_lp(key, at)
    return view, topic, _U32.unpack_from(key, at)[0]


def latest_key(view: str, key: str) -> bytes:
    """Key of the current version of a row."""
    return NS_LATEST + lp(view) + lp(key)


def version_prefix(view: str, key: str) -> bytes:
    """Prefix shared by every version of one row."""
    return NS_VERSION + lp(view) + lp(key)


def version_key(view: str, key: str, valid_from_ms: int) -> bytes:
    """Key of the version valid from ``valid_from_ms``."""
    return version_prefix(view, key) + enc_int(valid_from_ms)


def change_prefix(view: str, key: str) -> bytes:
    """Prefix shared by every counter change of one row."""
    return NS_CHANGE + lp(view) + lp(key)


def change_key(view: str, key: str, change_valid_from_ms: int, order_id: str, seq: int) -> bytes:
    """Key of one counter change; the same (orderId, seq) always maps to the same key, so a redelivery is found."""
    return change_prefix(view, key) + enc_int(change_valid_from_ms) + lp(order_id) + enc_int(seq)


def parse_change_key(key: bytes, prefix_len: int) -> tuple[int, str, int]:
    """(change_valid_from_ms, orderId, seq) of a :func:`change_key` whose row prefix is ``prefix_len`` bytes."""
    at = prefix_len
    valid_from_ms = dec_int(key[at : at + INT_BYTES])
    order_id, at = read_lp(key, at + INT_BYTES)
    return valid_from_ms, order_id, dec_int(key[at : at + INT_BYTES])


def index_prefix(namespace: bytes, view: str, index: str) -> bytes:
    """Prefix of one index (``namespace`` is NS_INDEX_CURRENT or NS_INDEX_VERSIONED)."""
    return namespace + lp(view) + lp(index)


def equality_value_prefix(namespace: bytes, view: str, index: str, value: str) -> bytes:
    """Prefix of the entries of an equality index for one value."""
    return index_prefix(namespace, view, index) + lp(value)


def current_equality_key(view: str, index: str, value: str, key: str, valid_from_ms: int) -> bytes:
    """Current equality entry: ordered by the row version's valid_from, then key."""
    return equality_value_prefix(NS_INDEX_CURRENT, view, index, value) + enc_int(valid_from_ms) + lp(key)


def current_ranking_key(view: str, index: str, value: int, key: str) -> bytes:
    """Current ranking entry: ordered by value descending, then key."""
    return index_prefix(NS_INDEX_CURRENT, view, index) + enc_desc(value) + lp(key)


#: valid_to of a current version in a versioned equality entry (sorts after every real time).
OPEN_END_MS: Final = (1 << 63) - 1


def versioned_equality_key(view: str, index: str, value: str, key: str, valid_to_ms: int | None) -> bytes:
    """Versioned equality entry: one per row version, ordered by valid_to (current versions last).

    An as-of-T scan seeks to valid_to > T: every entry from there on ended after T, so
    only the ones that also started after T are skipped (few, for a recent T), and the
    versions valid at T come first, so a ``limit`` is reached early.
    """
    end = OPEN_END_MS if valid_to_ms is None else valid_to_ms
    return equality_value_prefix(NS_INDEX_VERSIONED, view, index, value) + enc_int(end) + lp(key)


def versioned_ranking_key(view: str, index: str, value: int, key: str, valid_from_ms: int) -> bytes:
    """Versioned ranking entry: one per row version, ordered by value descending, then key, then valid_from."""
    return index_prefix(NS_INDEX_VERSIONED, view, index) + enc_desc(value) + lp(key) + enc_int(valid_from_ms)
