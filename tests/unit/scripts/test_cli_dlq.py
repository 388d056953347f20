"""What `rewind dlq list|show` print (scripts/cli_dlq.py), from letters built without a broker."""

from __future__ import annotations

from collections import Counter

import pytest

from pipelines.dlq import DeadLetter
from pipelines.dlq_reader import DlqListing, Letter, LetterId, letter_from_record
from schemas.fast_decode import event_decoder
from scripts.cli_dlq import _print_letter, _print_table, _summary


def _letter(partition: int, offset: int, reason_class: str, *extra: tuple[str, bytes]) -> Letter:
    dead = DeadLetter(b"ord-7", b"\x17\x18junk", reason_class, f"why {reason_class}", "orders", 1, 99, "order-status", 0)
    return letter_from_record(LetterId(partition, offset), dead.key, dead.value, [*dead.headers(now_ms=1_795_273_200_000), *extra],
                              timestamp_ms=None, decode=event_decoder())


def _listing(*letters: Letter, matched: int | None = None) -> DlqListing:
    return DlqListing("orders.dlq", list(letters), len(letters) if matched is None else matched,
                      Counter(letter.reason_class or "?" for letter in letters))


def test_the_table_shows_extra_headers_only_when_a_letter_has_one(capsys: pytest.CaptureFixture[str]) -> None:
    """Scenario: letters with only the standard headers, then one parked letter with rewind.parked.behind. We expect the
    "other headers" column only in the second table, with the header and its value; ids and the summary in both."""
    plain = _letter(0, 4, "BadMagicError")
    _print_table(_listing(plain))
    first = capsys.readouterr().out
    assert "0:4" in first and "BadMagicError" in first and "other headers" not in first
    assert first.strip().endswith("1 letter in orders.dlq: BadMagicError 1")
    parked = _letter(2, 9, "Parked", ("rewind.parked.behind", b"orders/1@98"))
    _print_table(_listing(plain, parked))
    second = capsys.readouterr().out
    assert "other headers" in second and "rewind.parked.behind=orders/1@98" in second and "2:9" in second


def test_the_summary_counts_all_matches_and_says_when_it_shows_fewer() -> None:
    """Scenario: 7 matching letters, 2 shown. We expect the total, the cut, and the counts by reason, most frequent first."""
    letters = [_letter(0, 1, "Parked"), _letter(0, 2, "BadMagicError")]
    listing = DlqListing("orders.dlq", letters, 7, Counter({"BadMagicError": 2, "Parked": 5}))
    assert _summary(listing) == "7 letters in orders.dlq (showing the first 2): Parked 5, BadMagicError 2"
    assert _summary(DlqListing("orders.dlq")) == "0 letters in orders.dlq"


def test_show_prints_every_header_and_the_bytes_of_an_undecodable_value(capsys: pytest.CaptureFixture[str]) -> None:
    """Scenario: `dlq show` of an undecodable letter with a redrive header. We expect each header, the codec's error
    and the value's bytes in hex."""
    _print_letter(_letter(3, 17, "BadMagicError", ("rewind.redrive.of", b"orders/1@5")), "orders.dlq")
    out = capsys.readouterr().out
    for text in ("dead letter 3:17 of orders.dlq", "header rewind.reason.class", "header rewind.redrive.of", "orders/1@5",
                 "BadMagicError", b"\x17\x18junk".hex(), "2026-11-21T15:00:00.000Z"):
        assert text in out, text
