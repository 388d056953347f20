"""Waiting until the registry says it is ready."""

from __future__ import annotations

import time
from collections.abc import Callable

from scripts.local_service import poll_until_ready
from scripts.registry_local.api import _is_ready
from scripts.registry_local.errors import RegistryLocalError
from scripts.registry_local.paths import HOST


def wait_until_ready(port: int, *, timeout_s: float) -> None:
    """Return once the registry on 127.0.0.1:``port`` says UP on ``/health/ready``.

    The port accepts connections a little before the storage is checked, so
    this asks the readiness endpoint (storage and database checks included)
    rather than the socket. Raises RegistryLocalError after ``timeout_s``.
    """
    _wait_ready(port, timeout_s=timeout_s, alive=None)


def _wait_ready(port: int, *, timeout_s: float, alive: Callable[[], bool] | None) -> None:
    poll_until_ready(
        lambda call_timeout_s: _is_ready(port, timeout_s=call_timeout_s),
        deadline=time.monotonic() + timeout_s, timeout_s=timeout_s, call_timeout_s=2.0, alive=alive,
        what="registry", not_ready=f"the registry at {HOST}:{port} was not ready", error=RegistryLocalError,
    )
