"""The registry's ports: valid and distinct (free on 127.0.0.1 is checked at start, with kafka_local's bind test)."""

from __future__ import annotations

from scripts.registry_local.errors import RegistryLocalError


def _check_ports(port: int, management_port: int) -> None:
    for p in (port, management_port):
        if not 1 <= p <= 65535:
            raise RegistryLocalError(f"invalid port {p}: use 1-65535")
    if port == management_port:
        raise RegistryLocalError(f"the registry's HTTP and management ports must differ (both are {port})")
