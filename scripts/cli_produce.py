"""`rewind produce`: send a deterministic order workload to Kafka and write its oracle."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the produce command to ``app``."""
