"""SIGINT/SIGTERM turn into a stop flag that long work checks between batches."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["stop_on_signals"]


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """While inside, SIGINT and SIGTERM set ``stop`` instead of killing the process.

    The work then stops after its current batch and cleans up. A second signal restores
    the previous handlers and re-delivers itself, so an impatient operator can still kill
    a stuck replay. Outside the main thread (where Python cannot install handlers) this
    does nothing. The previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in watched}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            restore()
            signal.raise_signal(signum)
            return
        stop.set()

    for signum in watched:
        signal.signal(signum, on_signal)
    try:
        yield stop
    finally:
        restore()
