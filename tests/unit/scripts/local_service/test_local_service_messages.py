"""Error messages quote the tail of a log or of mvn's output, readably."""

from __future__ import annotations

from scripts.local_service import messages


def test_error_tails_drop_colour_codes_and_blank_lines() -> None:
    text = "\x1b[0mfirst\n\n\x1b[1;31m[ERROR] second\x1b[m\n" + "".join(f"line {i}\n" for i in range(30))
    tail = messages.tail(text)
    assert "\x1b" not in tail
    assert tail.splitlines() == [f"line {i}" for i in range(10, 30)]
    assert messages.tail("\x1b[0mfirst\n\n[ERROR] second\n") == "first\n[ERROR] second"
