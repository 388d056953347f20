"""Text for people: tails of logs and tool output, timestamps, console lines."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

_LOG_TAIL_LINES = 20
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last non-blank lines, without terminal colour codes (mvn prints them)."""
    kept = [line for line in _ANSI_RE.sub("", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def log_tail_block(log_file: Path, *, what: str) -> str:
    """A block to append to an error message: the log's last lines, or a line saying there is no ``what`` log."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return f"\n(no {what} log at {log_file})"
    return f"\n--- last lines of {log_file} ---\n{tail(text)}"


def now() -> str:
    """Local time with its UTC offset, as the log lines this package writes carry it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def say(console: Any, message: str) -> None:
    """Print ``message`` on ``console`` (a rich Console or anything with print()); None stays silent."""
    if console is not None:
        console.print(message)
