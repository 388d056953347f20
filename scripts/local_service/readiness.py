"""Polling a service until it says it is ready, with a deadline, while its process lives."""

from __future__ import annotations

import time
from collections.abc import Callable

from schemas.errors import RewindError
from scripts.local_service.paths import POLL_INTERVAL_S


def poll_until_ready(
    probe: Callable[[float], tuple[bool, str]],
    *,
    deadline: float,
    timeout_s: float,
    call_timeout_s: float,
    alive: Callable[[], bool] | None,
    what: str,
    not_ready: str,
    error: type[RewindError],
) -> None:
    """Call ``probe(call timeout)`` every ``POLL_INTERVAL_S`` until it returns ``(True, _)``.

    ``probe`` returns whether the service is ready and, when not, why; each
    call gets at most ``call_timeout_s`` and never more than what is left
    until ``deadline`` (a ``time.monotonic()`` value), so ``alive`` (None:
    not checked) runs between calls. Raises ``error``: "the ``what`` process
    exited during start-up" when ``alive()`` is False, or "``not_ready``
    within ``timeout_s`` s (last reason)" once the deadline has passed.
    """
    last_error = "no answer yet"
    while True:
        if alive is not None and not alive():
            raise error(f"the {what} process exited during start-up")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error(f"{not_ready} within {timeout_s:g} s ({last_error})")
        ready, last_error = probe(min(call_timeout_s, remaining))
        if ready:
            return
        time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))
