"""SIGINT/SIGTERM only noted while uvicorn serves, for the HTTP servers (`rewind serve`, `rewind orders serve`)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["signals_noted"]


@contextmanager
def signals_noted() -> Iterator[list[int]]:
    """While inside, SIGINT/SIGTERM are only noted in the yielded list (uvicorn installs its own on top, and
    re-raises the signal once it has stopped: this handler takes it, so the caller's clean-up still runs).
    Off the main thread, where signals cannot be handled, nothing is installed."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = {sig: signal.signal(sig, lambda number, frame: noted.append(number)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
