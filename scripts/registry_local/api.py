"""The few registry HTTP calls this package makes: readiness, and the global compatibility level (ccompat API)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Literal

from scripts.registry_local.errors import RegistryLocalError
from scripts.registry_local.paths import CCOMPAT_PATH, HOST

#: The levels `up` may set: a replay from offset zero reads every version
#: ever written, so every old writer must stay readable, not just the last one.
TransitiveLevel = Literal["BACKWARD_TRANSITIVE", "FULL_TRANSITIVE"]
DEFAULT_COMPATIBILITY: TransitiveLevel = "BACKWARD_TRANSITIVE"

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _base(port: int) -> str:
    return f"http://{HOST}:{port}"


def _is_ready(port: int, *, timeout_s: float) -> tuple[bool, str]:
    """Whether ``/health/ready`` says UP; with the reason when not.

    Apicurio 3.0.9 serves its health checks on the HTTP port (its build has no
    Quarkus management interface).
    """
    try:
        with urllib.request.urlopen(f"{_base(port)}/health/ready", timeout=timeout_s) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:  # 503 while a check is DOWN
        return False, f"/health/ready answered {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return False, f"/health/ready: {reason}"
    status = body.get("status") if isinstance(body, dict) else None
    return status == "UP", f"/health/ready status {status!r}"


def _ccompat_call(port: int, method: str, path: str, *, body: object = None, timeout_s: float) -> object:
    request = urllib.request.Request(
        f"{_base(port)}{CCOMPAT_PATH}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        raise RegistryLocalError(f"{method} {CCOMPAT_PATH}{path} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RegistryLocalError(f"{method} {CCOMPAT_PATH}{path} failed: {exc}") from exc


def get_global_compatibility(port: int, *, timeout_s: float = 5.0) -> str:
    """The registry-wide compatibility level (``GET /config``)."""
    answer = _ccompat_call(port, "GET", "/config", timeout_s=timeout_s)
    level = answer.get("compatibilityLevel") if isinstance(answer, dict) else None
    if not isinstance(level, str):
        raise RegistryLocalError(f"GET {CCOMPAT_PATH}/config gave no compatibilityLevel: {answer!r}")
    return level


def set_global_compatibility(port: int, level: TransitiveLevel, *, timeout_s: float = 5.0) -> None:
    """Set the registry-wide level (``PUT /config``) and read it back; subjects with their own level keep it."""
    _ccompat_call(port, "PUT", "/config", body={"compatibility": level}, timeout_s=timeout_s)
    now = get_global_compatibility(port, timeout_s=timeout_s)
    if now != level:
        raise RegistryLocalError(f"set the global compatibility level to {level}, but the registry says {now}")
