"""Reading dead letters back: the DLQ topic from its beginning to its end, as typed letters.

The read side of :mod:`pipelines.dlq` (which says how a letter is written). Used by
`rewind dlq list|show` and by ``GET /dlq`` on `rewind serve`.

**Letter ids.** A letter is named by its place in the DLQ topic, ``partition:offset``
(e.g. ``3:17``): stable for as long as the topic keeps the record (the DLQ never expires
records, see :data:`pipelines.topics.DLQ_TOPIC_CONFIG`), the same whatever filter was used
to list it, and the same from the CLI and over HTTP. A running index would shift with every
filter and every new letter.

**What a read sees.** Only committed records (``read_committed``: a pipeline writes its
letters in the same transaction as its views), from each partition's earliest offset to
its last stable offset *as seen when the read starts*, so a read always ends even while
pipelines keep writing. The consumer joins no group and commits nothing.

**Headers.** Every header is decoded (UTF-8; bytes that are not UTF-8 are shown with
backslash escapes), not only the ones :data:`pipelines.dlq.DLQ_HEADERS` names: headers
other writers add (``rewind.parked.behind``, ``rewind.redrive.of``, ...) appear as they
are, with no change here. A header repeated on one record keeps its last value.

**The value.** Decoded with the pipelines' own decoder (:func:`schemas.fast_decode.event_decoder`:
both framings, upcast to the newest shape). When it decodes, the letter carries the event,
its orderId, seq and eventType; when it does not (that is often why it is a letter), the
codec's error, and the orderId falls back to the record key.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from pipelines.errors import TopicError
from pipelines.topics import admin_client, check_reachable
from schemas.errors import RewindError

__all__ = [
    "Letter",
    "LetterId",
    "LetterFilter",
    "DlqListing",
    "DlqReadError",
    "DlqTopicNotFoundError",
    "InvalidLetterIdError",
    "LetterNotFoundError",
    "decode_headers",
    "letter_from_record",
    "read_letters",
    "list_letters",
    "read_letter",
    "VALUE_PREVIEW_BYTES",
]

#: The reserved header names the reader gives a meaning to (the writer's list is pipelines.dlq.DLQ_HEADERS).
REASON_CLASS: Final = "rewind.reason.class"
REASON: Final = "rewind.reason.message"
SOURCE_TOPIC: Final = "rewind.source.topic"
SOURCE_PARTITION: Final = "rewind.source.partition"
SOURCE_OFFSET: Final = "rewind.source.offset"
PIPELINE: Final = "rewind.pipeline"
DEAD_LETTERED_AT: Final = "rewind.dead_lettered_at"

#: How many bytes of an undecodable value a letter shows (as hex).
VALUE_PREVIEW_BYTES: Final = 64
_MAX_PARTITION: Final = 2**31 - 1
_MAX_OFFSET: Final = 2**63 - 1
_ID: Final = re.compile(r"([0-9]{1,12}):([0-9]{1,20})")


class DlqReadError(RewindError):
    """The DLQ topic could not be read to its end within the time allowed (the message names the partitions left).

    The broker answered but was too slow, or a partition's leader is unavailable; retry, or raise the timeout.
    """


class DlqTopicNotFoundError(TopicError):
    """The DLQ topic does not exist on this broker: a wrong REWIND_DLQ_TOPIC / --dlq-topic, or no pipeline has run yet."""


class InvalidLetterIdError(RewindError):
    """A letter id is not ``partition:offset`` (two non-negative integers within Kafka's ranges). Use an id `rewind dlq list` printed."""


class LetterNotFoundError(RewindError):
    """No committed dead letter is at this ``partition:offset`` of the DLQ topic (no such partition, offset outside it, or not a record)."""


@dataclass(frozen=True, slots=True, order=True)
class LetterId:
    """Where a letter is in the DLQ topic: ``partition:offset`` (offset: the record's own, not a next_offset)."""

    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> LetterId:
        """``"3:17"`` -> LetterId(3, 17); :class:`InvalidLetterIdError` for anything else (one line, naming the text)."""
        match = _ID.fullmatch(text.strip())
        if match is None:
            raise InvalidLetterIdError(f"letter id {text[:40]!r} is not partition:offset (e.g. 3:17, as `rewind dlq list` prints)")
        partition, offset = int(match[1]), int(match[2])
        if partition > _MAX_PARTITION or offset > _MAX_OFFSET:
            raise InvalidLetterIdError(f"letter id {text[:40]!r}: partition 0 to {_MAX_PARTITION}, offset 0 to {_MAX_OFFSET}")
        return cls(partition, offset)

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


def decode_headers(headers: Sequence[tuple[str, bytes | str | None]] | None) -> dict[str, str | None]:
    """Every header as name -> text, in record order (a repeated name keeps its last value).

    Values are UTF-8; bytes that are not are kept visible as backslash escapes (``\\xff``), never dropped.
    A header with no value is None.
    """
    out: dict[str, str | None] = {}
    for name, value in headers or ():
        out[name] = value if value is None or isinstance(value, str) else value.decode("utf-8", errors="backslashreplace")
    return out


def _int(text: str | None) -> int | None:
    """A numeric header, or None when it is absent or not an integer (a foreign writer's letter)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def _jsonable(value: Any) -> Any:
    """A decoded event as plain JSON types: Avro bytes/fixed as hex, decimals as strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as read back: where it is in the DLQ, the original record, and every header decoded.

    ``order_id`` is the event's orderId when the value decodes, else the record key (as text);
    ``seq``/``event_type``/``event`` are None when the value does not decode, and
    ``decode_error`` then says why (``"ClassName: message"``).
    """

    id: LetterId
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: dict[str, str | None]
    order_id: str | None
    seq: int | None
    event_type: str | None
    event: dict[str, Any] | None
    decode_error: str | None

    @property
    def reason_class(self) -> str | None:
        """The reason class (``rewind.reason.class``): a codec error's name, ImpossibleTransition, LateEvent, Parked, ..."""
        return self.headers.get(REASON_CLASS)

    @property
    def reason(self) -> str | None:
        """The one-line reason (``rewind.reason.message``)."""
        return self.headers.get(REASON)

    @property
    def pipeline(self) -> str | None:
        """The pipeline that wrote this letter (``rewind.pipeline``): each pipeline writes its own for one bad record."""
        return self.headers.get(PIPELINE)

    @property
    def key_text(self) -> str | None:
        """The record key as text (non-UTF-8 bytes as backslash escapes); None for a record without a key."""
        return None if self.key is None else self.key.decode("utf-8", errors="backslashreplace")

    def summary_json(self) -> dict[str, Any]:
        """The letter without its value: what `rewind dlq list --json` prints per line and GET /dlq lists."""
        h = self.headers
        dead_ms = _int(h.get(DEAD_LETTERED_AT))
        topic = h.get(SOURCE_TOPIC)
        return {
            "id": str(self.id),
            "partition": self.id.partition,
            "offset": self.id.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": self.key_text,
            "order_id": self.order_id,
            "seq": self.seq,
            "event_type": self.event_type,
            "reason_class": self.reason_class,
            "reason": self.reason,
            "pipeline": self.pipeline,
            "source": None if topic is None else {
                "topic": topic, "partition": _int(h.get(SOURCE_PARTITION)), "offset": _int(h.get(SOURCE_OFFSET)),
            },
            "dead_lettered_at_ms": dead_ms,
            "dead_lettered_at": _iso(dead_ms),
            "headers": dict(h),
        }

    def full_json(self) -> dict[str, Any]:
        """The summary plus the key's and value's bytes: the event when the value decodes, else a hex preview and the error."""
        value = self.value
        return {
            **self.summary_json(),
            "key_hex": None if self.key is None else self.key.hex(),
            "value_bytes": None if value is None else len(value),
            "event": None if self.event is None else _jsonable(self.event),
            "decode_error": self.decode_error,
            "value_hex": None if value is None or self.event is not None else value[:VALUE_PREVIEW_BYTES].hex(),
        }


Decode = Callable[[bytes], Mapping[str, Any]]


def letter_from_record(
    letter_id: LetterId,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | str | None]] | None,
    *,
    timestamp_ms: int | None,
    decode: Decode,
) -> Letter:
    """The :class:`Letter` of one DLQ record (pure: no broker). Never raises for a bad value or header."""
    event: dict[str, Any] | None = None
    error: str | None = None
    if not value:
        error = "empty value (a tombstone or an empty record)"
    else:
        try:
            event = dict(decode(value))
        except Exception as exc:  # any failure to decode is shown, not raised: it is why many letters exist
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    envelope = event.get("envelope") if event is not None else None
    if isinstance(envelope, Mapping):
        order_id = envelope.get("orderId")
        seq = envelope.get("seq")
        event_type = envelope.get("eventType")
    else:
        order_id = seq = event_type = None
    if not isinstance(order_id, str):
        order_id = None if key is None else key.decode("utf-8", errors="backslashreplace")
    return Letter(
        id=letter_id, timestamp_ms=timestamp_ms, key=key, value=value, headers=decode_headers(headers),
        order_id=order_id, seq=seq if isinstance(seq, int) else None, event_type=event_type if isinstance(event_type, str) else None,
        event=event, decode_error=error,
    )


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which letters to keep; None matches anything. All given conditions must hold (exact matches).

    ``order`` matches the letter's orderId (from the value) or its record key: a KeyMismatch
    letter is found under either.
    """

    reason: str | None = None
    order: str | None = None
    pipeline: str | None = None

    def matches(self, letter: Letter) -> bool:
        """True when ``letter`` meets every given condition."""
        if self.reason is not None and letter.reason_class != self.reason:
            return False
        if self.pipeline is not None and letter.pipeline != self.pipeline:
            return False
        return self.order is None or self.order in (letter.order_id, letter.key_text)


@dataclass(slots=True)
class DlqListing:
    """A filtered listing: the first ``limit`` matching letters (DLQ order: partition, then offset),
    how many matched in all, and those counted by reason class (``"?"`` for a letter without one)."""

    topic: str
    letters: list[Letter] = field(default_factory=list)
    matched: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)


def _consumer(bootstrap: str, *, timeout_s: float) -> Consumer:
    # A throwaway group id: librdkafka wants one, but nothing is ever committed under it (assign, never subscribe).
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"rewind-dlq-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "enable.auto.offset.store": False, "isolation.level": "read_committed",
        "enable.partition.eof": True, "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        "log_level": 0,
    })


def _bounds(bootstrap: str, topic: str, *, timeout_s: float) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic``: (earliest offset, last stable offset) now. DlqTopicNotFoundError when it does not exist."""
    admin = admin_client(bootstrap)
    try:
        meta = admin.list_topics(timeout=timeout_s).topics.get(topic)
    except KafkaException as exc:
        raise DlqReadError(f"reading the metadata of {topic}: {exc}") from exc
    if meta is None or meta.error is not None:
        raise DlqTopicNotFoundError(f"DLQ topic {topic!r} does not exist at {bootstrap} (set --dlq-topic / REWIND_DLQ_TOPIC; "
                                    "a pipeline creates it when it starts)")
    partitions = sorted(meta.partitions)
    out: dict[int, tuple[int, int]] = {}
    try:
        # The last stable offset, not the high watermark: a pipeline's open transaction would hold the read until it ends.
        ends = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                                  isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout_s)
        starts = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.earliest() for p in partitions},
                                    isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout_s)
        for p in partitions:
            out[p] = (starts[TopicPartition(topic, p)].result().offset, ends[TopicPartition(topic, p)].result().offset)
    except KafkaException as exc:
        raise DlqReadError(f"reading the offsets of {topic}: {exc}") from exc
    return out


def _read_to(consumer: Consumer, topic: str, bounds: Mapping[int, tuple[int, int]], *, deadline: float) -> Iterator[Message]:
    """The committed records at offsets start..end-1 of each partition in ``bounds``: in offset order within a
    partition, partitions interleaved (all are read at once). DlqReadError past ``deadline``."""
    todo = {p for p, (start, end) in bounds.items() if start < end}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, bounds[p][0]) for p in sorted(todo)])
    while todo:
        if time.monotonic() > deadline:
            raise DlqReadError(f"timed out reading {topic} to its end; partitions left: {sorted(todo)}")
        for msg in consumer.consume(1000, timeout=0.2):
            partition = msg.partition()
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    todo.discard(partition)  # at the partition's (stable) end, at or past the one asked for
                    continue
                raise DlqReadError(f"reading {topic} partition {partition}: {error}")
            offset = msg.offset()
            if partition not in todo or offset is None or partition is None:
                continue
            end = bounds[partition][1]
            if offset >= end - 1:
                todo.discard(partition)
            if offset < end:
                yield msg
        if todo:
            # Past commit markers and aborted records the position moves without a message.
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= bounds[tp.partition][1]:
                    todo.discard(tp.partition)


def read_letters(
    bootstrap: str,
    topic: str,
    *,
    decode: Decode,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
) -> Iterator[Letter]:
    """Every committed letter of ``topic`` up to its end as of the call: offset order within a partition,
    partitions interleaved (:func:`list_letters` sorts by id).

    Raises :class:`~pipelines.errors.BrokerUnreachableError` when no broker answers within
    ``connect_timeout_s``, :class:`DlqTopicNotFoundError` for a missing topic, and
    :class:`DlqReadError` when the whole read takes longer than ``timeout_s``.
    """
    check_reachable(bootstrap, timeout_s=connect_timeout_s)
    bounds = _bounds(bootstrap, topic, timeout_s=connect_timeout_s)
    deadline = time.monotonic() + timeout_s
    consumer = _consumer(bootstrap, timeout_s=connect_timeout_s)
    try:
        for msg in _read_to(consumer, topic, bounds, deadline=deadline):
            yield letter_from_record(LetterId(msg.partition() or 0, msg.offset() or 0), msg.key(), msg.value(), msg.headers(),
                                     timestamp_ms=msg.timestamp()[1], decode=decode)
    finally:
        consumer.close()


def list_letters(
    bootstrap: str,
    topic: str,
    *,
    decode: Decode,
    where: LetterFilter | None = None,
    limit: int | None = None,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
) -> DlqListing:
    """The letters that match ``where``: the first ``limit`` by id (partition, then offset) kept, all of them
    counted. See :func:`read_letters` for the errors."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    listing = DlqListing(topic)
    # The first ``limit`` of each partition: enough to pick the first ``limit`` overall, and bounded memory.
    kept: dict[int, list[Letter]] = {}
    for letter in read_letters(bootstrap, topic, decode=decode, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s):
        if where is not None and not where.matches(letter):
            continue
        listing.matched += 1
        listing.by_reason[letter.reason_class or "?"] += 1
        mine = kept.setdefault(letter.id.partition, [])
        if limit is None or len(mine) < limit:
            mine.append(letter)
    ordered = sorted((letter for letters in kept.values() for letter in letters), key=lambda letter: letter.id)
    listing.letters = ordered if limit is None else ordered[:limit]
    return listing


def read_letter(
    bootstrap: str,
    topic: str,
    letter_id: LetterId,
    *,
    decode: Decode,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
) -> Letter:
    """The letter at ``letter_id``, read directly (one fetch, not the whole topic).

    :class:`LetterNotFoundError` when the partition does not exist, the offset is outside the
    committed records, or it holds no committed record (a transaction marker, an aborted write).
    """
    check_reachable(bootstrap, timeout_s=connect_timeout_s)
    bounds = _bounds(bootstrap, topic, timeout_s=connect_timeout_s)
    not_found = LetterNotFoundError(f"no dead letter {letter_id} in {topic} (partitions 0-{len(bounds) - 1}; "
                                    "ids are partition:offset as `rewind dlq list` prints them)")
    if letter_id.partition not in bounds:
        raise not_found
    start, end = bounds[letter_id.partition]
    if not start <= letter_id.offset < end:
        raise not_found
    consumer = _consumer(bootstrap, timeout_s=connect_timeout_s)
    try:
        deadline = time.monotonic() + timeout_s
        for msg in _read_to(consumer, topic, {letter_id.partition: (letter_id.offset, end)}, deadline=deadline):
            if msg.offset() != letter_id.offset:
                break  # the first committed record after it: nothing committed at the id itself
            return letter_from_record(letter_id, msg.key(), msg.value(), msg.headers(), timestamp_ms=msg.timestamp()[1], decode=decode)
    finally:
        consumer.close()
    raise not_found
