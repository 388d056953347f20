"""A fast writer of the codec's Avro single-object bytes, for the generator's hot loop.

``EventCodec.encode`` costs 4-6 µs per event (a BytesIO and fastavro's generic
walk, starting from a nested dict); the generator has to stay near 5 µs per
event in total. So the generator asks for one writer per order
(:meth:`FastEncoder.order_writer`), which holds the order's id and correlation
id already encoded, hands it each event's envelope values as plain arguments
and its payload as a small dict, and gets bytes concatenated from a layout
known per type (the type's header and name are encoded once).

The layouts below are written from the newest schemas (older versions, which
the workload writes only for a share of events, go through the codec). At construction every
type's writer is checked against ``EventCodec.encode`` on a sample event, byte
for byte; a type whose writer disagrees (a new schema version, a new type) is
encoded through the codec instead (listed in ``fallback_types``). So the
output is always exactly the codec's bytes, only faster when it can be.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.codec import MAGIC, Event, EventCodec
from schemas.errors import CodecError

__all__ = ["FastEncoder", "OrderWriter", "avro_long", "avro_string"]

#: (event_type, event_id, seq, occurred_at_ms, causation_id, payload) -> single-object bytes
OrderWriter = Callable[[str, str, int, int, str, Mapping[str, Any]], bytes]

# Varints are looked up 7-bit group by group pair rather than computed bit by bit:
# _ONE[x] is the final group x; _TWO[x] two continued groups; _LAST[x] a continued group, then the final one.
_ONE = tuple(bytes((x,)) for x in range(1 << 7))
_TWO = tuple(bytes((x & 0x7F | 0x80, x >> 7 | 0x80)) for x in range(1 << 14))
_LAST = tuple(bytes((x & 0x7F | 0x80, x >> 7)) for x in range(1 << 14))
_SMALL = tuple(_ONE[n << 1] for n in range(64))  # zig-zag of 0..63: seqs, quantities, short lengths
_TS_MIN, _TS_MAX = 1 << 34, 1 << 41  # epoch millis in here (mid-1970 to 2039) zig-zag to six groups


def avro_long(n: int) -> bytes:
    """Avro int/long: zig-zag, then a base-128 varint, low group first."""
    if 0 <= n < 64:
        return _SMALL[n]
    z = (n << 1) ^ (n >> 63)
    if z < 1 << 7:
        return _ONE[z]
    if z < 1 << 14:
        return _LAST[z]
    if z < 1 << 21:
        return _TWO[z & 0x3FFF] + _ONE[z >> 14]
    if z < 1 << 28:
        return _TWO[z & 0x3FFF] + _LAST[z >> 14]
    if z < 1 << 35:
        return _TWO[z & 0x3FFF] + _TWO[z >> 14 & 0x3FFF] + _ONE[z >> 28]
    if z < 1 << 42:
        return _TWO[z & 0x3FFF] + _TWO[z >> 14 & 0x3FFF] + _LAST[z >> 28]
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_string(s: str) -> bytes:
    """Avro string: byte length as a long, then UTF-8."""
    raw = s.encode()
    n = len(raw)
    return (_SMALL[n] if n < 64 else avro_long(n)) + raw


# Strings from small vocabularies (SKUs, customer ids, currencies, reasons, carriers) repeat all the
# time: their encodings are memoised, up to a cap so that arbitrary input cannot grow it without bound.
_VOCABULARY: dict[str, bytes] = {}
_VOCABULARY_CAP = 1 << 17


def _word(s: str) -> bytes:
    encoded = _VOCABULARY.get(s)
    if encoded is None:
        encoded = avro_string(s)
        if len(_VOCABULARY) < _VOCABULARY_CAP:
            _VOCABULARY[s] = encoded
    return encoded


def _line(sku: str, quantity: int, unit_price_minor: int) -> bytes:
    # Order lines repeat too (a catalog of SKUs, quantities 1-5): memoised like words.
    key = (sku, quantity, unit_price_minor)
    encoded = _LINES.get(key)
    if encoded is None:
        encoded = _word(sku) + avro_long(quantity) + avro_long(unit_price_minor)
        if len(_LINES) < _VOCABULARY_CAP:
            _LINES[key] = encoded
    return encoded


_LINES: dict[tuple[str, int, int], bytes] = {}


def _items(items: list[Mapping[str, Any]]) -> bytes:
    # One block holding every item, then the zero-count end block: what fastavro writes.
    if not items:
        return b"\x00"
    body = b"".join([_line(i["sku"], i["quantity"], i["unitPriceMinor"]) for i in items])
    return avro_long(len(items)) + body + b"\x00"


def _refund_lines(lines: list[Mapping[str, Any]]) -> bytes:
    if not lines:
        return b"\x00"
    return avro_long(len(lines)) + b"".join([_word(i["sku"]) + avro_long(i["quantity"]) for i in lines]) + b"\x00"


_S = avro_string
_L = avro_long
_W = _word

#: Payload layout per event type, in schema field order (the envelope comes first and is written separately).
_PAYLOAD_WRITERS: dict[str, Callable[[Mapping[str, Any]], bytes]] = {
    "OrderPlaced": lambda p: (
        _W(p["customerId"]) + _items(p["items"]) + _L(p["total"]["amountMinor"]) + _W(p["total"]["currency"]) + _W(p["salesChannel"])
    ),
    "PaymentAuthorized": lambda p: _S(p["paymentId"]) + _L(p["authorizedMinor"]) + _W(p["currency"]),
    "PaymentFailed": lambda p: _W(p["reason"]),
    "InventoryReserved": lambda p: _W(p["warehouseId"]),
    "InventoryReleased": lambda p: _W(p["reason"]),
    "OrderShipped": lambda p: _W(p["carrier"]) + _S(p["trackingNumber"]),
    "OrderDelivered": lambda p: b"",
    "OrderCancelled": lambda p: _W(p["reason"]),
    "RefundIssued": lambda p: _refund_lines(p["items"]) + _L(p["amountMinor"]) + _W(p["currency"]) + _W(p["reason"]),
}

_SAMPLE_PAYLOAD: dict[str, Any] = {
    "customerId": "cust-é7",  # non-ASCII: byte length differs from character length
    "items": [
        {"sku": "sku-0001", "quantity": 2, "unitPriceMinor": 1999},
        {"sku": "sku-0200", "quantity": 70, "unitPriceMinor": -5},
    ],
    "totalMinor": 4000,
    "total": {"amountMinor": 4000, "currency": "GBP"},
    "salesChannel": "app",
    "amountMinor": 123_456_789,
    "authorizedMinor": 987_654_321,
    "currency": "EUR",
    "paymentId": "pay-1",
    "reason": "x" * 200,
    "warehouseId": "wh-1",
    "carrier": "DHL",
    "trackingNumber": "JD0001",
}


def _sample(event_type: str, version: int, fields: list[dict[str, Any]]) -> Event:
    """A sample event of ``event_type`` that fills every field its schema has."""
    event: Event = {
        "envelope": {
            "eventId": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "eventType": event_type,
            "schemaVersion": version,
            "orderId": "ord-0000042",
            "seq": 300,
            "occurredAt": 1_700_000_123_456,
            "correlationId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "causationId": "cmd-1",
        }
    }
    for field in fields:
        if field["name"] != "envelope":
            event[field["name"]] = _SAMPLE_PAYLOAD.get(field["name"], "")
    return event


class FastEncoder:
    """Encodes events to exactly ``EventCodec.encode``'s bytes, with per-type writers checked at start-up."""

    def __init__(self, codec: EventCodec | None = None) -> None:
        self._codec = codec or EventCodec()
        # event type -> (marker + fingerprint, eventType + schemaVersion, payload writer)
        self._fast: dict[str, tuple[bytes, bytes, Callable[[Mapping[str, Any]], bytes]]] = {}
        fallback = []
        for schema in self._codec.registry.latest():
            writer = _PAYLOAD_WRITERS.get(schema.event_type)
            if writer is not None:
                self._fast[schema.event_type] = (
                    MAGIC + schema.fingerprint,
                    _S(schema.event_type) + _L(schema.version),
                    writer,
                )
                sample = _sample(schema.event_type, schema.version, schema.parsed["fields"])
                try:
                    agrees = self.encode(sample) == self._codec.encode(sample)
                except (CodecError, KeyError, TypeError, ValueError):
                    agrees = False
                if agrees:
                    continue
                del self._fast[schema.event_type]
            fallback.append(schema.event_type)
        #: Types encoded through the codec because the fast layout does not match their schema.
        self.fallback_types: tuple[str, ...] = tuple(sorted(fallback))

    @property
    def codec(self) -> EventCodec:
        """The codec whose bytes this encoder reproduces."""
        return self._codec

    def encode(self, event: Event) -> bytes:
        """Single-object bytes of an event dict (codec shape)."""
        env = event["envelope"]
        if env.get("schemaVersion") != self._codec.registry.get(env["eventType"]).version:
            return self._codec.encode(event)  # the fast layouts write the latest version only
        payload = {k: v for k, v in event.items() if k != "envelope"}
        write = self.order_writer(env["orderId"], correlation_id=env["correlationId"])
        return write(env["eventType"], env["eventId"], env["seq"], env["occurredAt"], env["causationId"], payload)

    def order_writer(self, order_id: str, *, correlation_id: str) -> OrderWriter:
        """A writer of one order's events: ``write(event_type, event_id, seq, occurred_at_ms, causation_id, payload)``.

        Positional on purpose (unlike the rest of the package): it runs once per
        generated event, and keyword passing would cost a tenth of its time.
        """
        fast, codec = self._fast, self._codec
        order_bytes, correlation_bytes = _S(order_id), _S(correlation_id)
        # Each event's cause is usually the event written just before: reuse its encoded id.
        last_id: str | None = None
        last_bytes = b""

        def write(
            event_type: str, event_id: str, seq: int, occurred_at_ms: int, causation_id: str,
            payload: Mapping[str, Any],
        ) -> bytes:
            nonlocal last_id, last_bytes
            layout = fast.get(event_type)
            if layout is None:
                envelope = {
                    "eventId": event_id, "eventType": event_type,
                    "schemaVersion": codec.registry.get(event_type).version,
                    "orderId": order_id, "seq": seq, "occurredAt": occurred_at_ms,
                    "correlationId": correlation_id, "causationId": causation_id,
                }
                return codec.encode({"envelope": envelope, **payload})
            header, type_and_version, write_payload = layout
            cause = last_bytes if causation_id is last_id else _S(causation_id)
            raw = event_id.encode()  # avro_string, inlined: once per event
            last_id, last_bytes = event_id, (_SMALL[len(raw)] if len(raw) < 64 else _L(len(raw))) + raw
            if _TS_MIN <= occurred_at_ms < _TS_MAX:  # avro_long's six-group case, inlined
                z = occurred_at_ms << 1
                occurred = _TWO[z & 0x3FFF] + _TWO[z >> 14 & 0x3FFF] + _LAST[z >> 28]
            else:
                occurred = _L(occurred_at_ms)
            return b"".join((
                header, last_bytes, type_and_version, order_bytes,
                _SMALL[seq] if 0 <= seq < 64 else _L(seq), occurred,
                correlation_bytes, cause, write_payload(payload),
            ))

        return write
