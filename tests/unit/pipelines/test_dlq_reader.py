"""Dead letters read back (pipelines.dlq_reader), without a broker: ids, header decoding, the value, filters."""

from __future__ import annotations

import pytest

from pipelines.dlq import DeadLetter
from pipelines.dlq_reader import (
    VALUE_PREVIEW_BYTES,
    InvalidLetterIdError,
    Letter,
    LetterFilter,
    LetterId,
    decode_headers,
    letter_from_record,
)
from schemas.fast_decode import event_decoder
from scripts.workload import WorkloadConfig, generate

DECODE = event_decoder()


@pytest.fixture(scope="module")
def good_record() -> tuple[bytes, bytes, str, int, str]:
    """One real workload event: key, value, and its orderId, seq and eventType (from the generator, not the decoder)."""
    record = next(r for r in generate(WorkloadConfig(seed=3, orders=2, days=1)).records if r.poison is None)
    assert record.seq is not None and record.event_type is not None
    return record.key, record.value, record.order_id, record.seq, record.event_type


def _letter(key: bytes | None, value: bytes | None, **extra_headers: str) -> Letter:
    letter = DeadLetter(key, value, "ImpossibleTransition", "SHIPPED -> PLACED", "orders", 4, 1234, "order-status", 0)
    headers = letter.headers(now_ms=1_795_273_200_000) + [(name, text.encode()) for name, text in extra_headers.items()]
    return letter_from_record(LetterId(2, 7), key, value, headers, timestamp_ms=1_795_273_200_001, decode=DECODE)


@pytest.mark.parametrize("text,expected", [("0:0", LetterId(0, 0)), ("11:123456", LetterId(11, 123456)),
                                            (" 3:17 ", LetterId(3, 17)), (f"{2**31 - 1}:{2**63 - 1}", LetterId(2**31 - 1, 2**63 - 1))])
def test_letter_ids_parse_as_listed(text: str, expected: LetterId) -> None:
    """Scenario: ids as `dlq list` prints them. We expect partition and offset back, and str() giving the id again."""
    assert LetterId.parse(text) == expected
    assert str(LetterId.parse(text)) == text.strip()


@pytest.mark.parametrize("text", ["", "3", "3:", ":17", "3:17:1", "-1:5", "3:-5", "a:b", "3.0:17", f"{2**31}:0", f"0:{2**63}",
                                  "9" * 40 + ":1", "3:17\n4:1", "３:17"])
def test_malformed_letter_ids_are_refused_in_one_line(text: str) -> None:
    """Scenario: ids that are not partition:offset within Kafka's ranges. We expect InvalidLetterIdError, one line."""
    with pytest.raises(InvalidLetterIdError) as caught:
        LetterId.parse(text)
    assert len(str(caught.value).splitlines()) == 1


def test_every_header_is_decoded_including_unknown_and_broken_ones() -> None:
    """Scenario: the writer's headers, a new rewind.* header, a non-UTF-8 value, a valueless one, a repeated name.
    We expect all of them, the bytes shown escaped, None for no value, the last value of a repeat."""
    headers = [("rewind.reason.class", b"Parked"), ("rewind.parked.behind", b"orders/3@17"), ("x-bin", b"\xff\xfeok"),
               ("x-none", None), ("rewind.redrive.of", b"first"), ("rewind.redrive.of", b"second")]
    assert decode_headers(headers) == {
        "rewind.reason.class": "Parked", "rewind.parked.behind": "orders/3@17", "x-bin": "\\xff\\xfeok", "x-none": None,
        "rewind.redrive.of": "second",
    }
    assert decode_headers(None) == {}


def test_a_decodable_letter_carries_its_event(good_record: tuple[bytes, bytes, str, int, str]) -> None:
    """Scenario: a letter whose value is a real event. We expect orderId, seq and eventType from the event, every
    header (a new one too) in the summary, and the event (not bytes) in the full form."""
    key, value, order_id, seq, event_type = good_record
    letter = _letter(key, value, **{"rewind.parked.behind": "orders/4@1000"})
    summary = letter.summary_json()
    assert (summary["order_id"], summary["seq"], summary["event_type"]) == (order_id, seq, event_type)
    assert summary["id"] == "2:7" and (summary["partition"], summary["offset"]) == (2, 7)
    assert summary["reason_class"] == "ImpossibleTransition" and summary["reason"] == "SHIPPED -> PLACED"
    assert summary["pipeline"] == "order-status"
    assert summary["source"] == {"topic": "orders", "partition": 4, "offset": 1234}
    assert summary["dead_lettered_at_ms"] == 1_795_273_200_000 and summary["dead_lettered_at"] == "2026-11-21T15:00:00.000Z"
    assert summary["headers"]["rewind.parked.behind"] == "orders/4@1000"
    full = letter.full_json()
    assert full["event"]["envelope"]["orderId"] == order_id and full["decode_error"] is None and full["value_hex"] is None
    assert full["value_bytes"] == len(value) and full["key_hex"] == key.hex()


@pytest.mark.parametrize("value", [b"\x17garbage", b"\xc3\x01" + b"\x00" * 8 + b"body", b"\xc3\x01\x01", b"", None])
def test_an_unreadable_letter_shows_its_bytes_and_the_codec_error(value: bytes | None) -> None:
    """Scenario: a letter whose value does not decode (garbage, unknown fingerprint, cut short, empty, none). We expect
    the orderId from the key, no seq or event, the codec's error in one line, and the first bytes in hex."""
    letter = _letter(b"ord-9", value)
    assert letter.order_id == "ord-9" and letter.seq is None and letter.event is None
    assert letter.decode_error and "\n" not in letter.decode_error
    full = letter.full_json()
    assert full["value_hex"] == (None if value is None else value[:VALUE_PREVIEW_BYTES].hex())


def test_a_long_value_is_previewed_not_dumped() -> None:
    """Scenario: 1,000 undecodable bytes. We expect only the first VALUE_PREVIEW_BYTES in hex, and the full length."""
    full = _letter(b"k", b"\x17" * 1000).full_json()
    assert full["value_hex"] == "17" * VALUE_PREVIEW_BYTES and full["value_bytes"] == 1000


def test_a_letter_with_no_key_and_foreign_headers_still_reads() -> None:
    """Scenario: a record another producer wrote to the DLQ: no key, no rewind headers, non-numeric offsets. We expect
    None where nothing is known, never an exception."""
    letter = letter_from_record(LetterId(0, 1), None, b"junk", [("rewind.source.offset", b"x"), ("rewind.source.topic", b"t")],
                                timestamp_ms=None, decode=DECODE)
    summary = letter.summary_json()
    assert summary["order_id"] is None and summary["key"] is None and summary["reason_class"] is None
    assert summary["source"] == {"topic": "t", "partition": None, "offset": None}
    assert summary["dead_lettered_at"] is None


def test_filters_match_exactly_and_all_must_hold(good_record: tuple[bytes, bytes, str, int, str]) -> None:
    """Scenario: filters by reason class, order and pipeline. We expect exact matches only, the order found by its
    orderId or its record key (a KeyMismatch letter), and every given condition applied."""
    key, value, order_id, _, _ = good_record
    letter = _letter(b"some-other-key", value)  # a KeyMismatch-like letter: key and orderId differ
    assert LetterFilter().matches(letter)
    assert LetterFilter(reason="ImpossibleTransition").matches(letter)
    assert not LetterFilter(reason="impossibletransition").matches(letter)
    assert not LetterFilter(reason="Impossible").matches(letter)
    assert LetterFilter(order=order_id).matches(letter) and LetterFilter(order="some-other-key").matches(letter)
    assert not LetterFilter(order=order_id[:-1]).matches(letter)
    assert LetterFilter(pipeline="order-status", order=order_id, reason="ImpossibleTransition").matches(letter)
    assert not LetterFilter(pipeline="customer-summary", order=order_id).matches(letter)
    assert not LetterFilter(reason="Parked", pipeline="order-status").matches(letter)
