"""Text for people: tails of logs and tool output, timestamps, console lines."""

from __future__ import annotations

import re
import time
from typing import Any

from scripts.kafka_local.paths import LocalKafkaPaths

_LOG_TAIL_LINES = 20
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last non-blank lines, without terminal colour codes (mvn prints them)."""
    kept = [line for line in _ANSI_RE.sub("", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _log_tail_block(paths: LocalKafkaPaths) -> str:
    try:
        text = paths.log_file.read_text(errors="replace")
    except OSError:
        return f"\n(no broker log at {paths.log_file})"
    return f"\n--- last lines of {paths.log_file} ---\n{_tail(text)}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _say(console: Any, message: str) -> None:
    # console: a rich Console or anything with print(); None stays silent.
    if console is not None:
        console.print(message)
