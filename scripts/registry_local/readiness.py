"""Waiting until the registry says it is ready."""

from __future__ import annotations

import time
from collections.abc import Callable

from scripts.registry_local.api import _is_ready
from scripts.registry_local.errors import RegistryLocalError
from scripts.registry_local.paths import _POLL_INTERVAL_S, HOST


def wait_until_ready(port: int, *, timeout_s: float) -> None:
    """Return once the registry on 127.0.0.1:``port`` says UP on ``/health/ready``.

    The port accepts connections a little before the storage is checked, so
    this asks the readiness endpoint (storage and database checks included)
    rather than the socket. Raises RegistryLocalError after ``timeout_s``.
    """
    _wait_ready(port, timeout_s=timeout_s, alive=None)


def _wait_ready(port: int, *, timeout_s: float, alive: Callable[[], bool] | None) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while True:
        if alive is not None and not alive():
            raise RegistryLocalError("the registry process exited during start-up")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RegistryLocalError(f"the registry at {HOST}:{port} was not ready within {timeout_s:g} s ({last_error})")
        # Short per-call timeout: the alive() check above runs between calls.
        ready, last_error = _is_ready(port, timeout_s=min(2.0, remaining))
        if ready:
            return
        time.sleep(min(_POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))
