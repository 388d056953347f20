"""Helpers for the command side's crash tests: the database of a run, and the oracle's fold of the events table.

The run itself (the service, the relay, the driver, the kills, the checks of the log) is
:mod:`scripts.command_side_crash`, which `python -m scripts.command_side_crash` runs at a larger scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts.command_side_crash import StoredEvent

__all__ = ["database_url_for", "ExpectedOrder", "fold_event_store", "view_faults"]


def database_url_for(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    """``sqlite``: a file in ``tmp_path``; ``postgresql``: the ``postgres_url`` fixture's fresh database."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@dataclass(frozen=True)
class ExpectedOrder:
    """What the events table says of one order: its status and its last seq."""

    status: str
    last_seq: int


def fold_event_store(stored: list[StoredEvent], status_after: Mapping[tuple[str | None, str], str]) -> tuple[dict[str, ExpectedOrder], list[str]]:
    """Each order's status and last seq from its events (``stored`` is by order and seq), walked with the
    caller's own transition table ``status_after`` ((status before or None, event type) -> status after).

    Also the faults of the events table (examples): a seq that is not the previous one plus one, a transition
    the table does not allow (the service must never have committed one).
    """
    expected: dict[str, ExpectedOrder] = {}
    faults: list[str] = []
    for e in stored:
        before = expected.get(e.order_id)
        if e.seq != (before.last_seq if before else 0) + 1:
            faults.append(f"{e.order_id} seq {e.seq} follows seq {before.last_seq if before else 0}")
        status = status_after.get((before.status if before else None, e.event_type))
        if status is None:
            faults.append(f"{e.order_id} seq {e.seq}: {e.event_type} in status {before.status if before else None}")
            continue
        expected[e.order_id] = ExpectedOrder(status, e.seq)
    return expected, faults[:20]


def view_faults(rows: Mapping[str, Mapping[str, Any]], expected: Mapping[str, ExpectedOrder]) -> list[str]:
    """Orders whose view row differs from ``expected`` in status or lastSeq, is missing, or should not exist (examples)."""
    faults = [f"{k}: view {rows[k].get('status') if k in rows else None}/{rows[k].get('lastSeq') if k in rows else None}, "
              f"event store {e.status}/{e.last_seq}"
              for k, e in sorted(expected.items()) if k not in rows or (rows[k].get("status"), rows[k].get("lastSeq")) != (e.status, e.last_seq)]
    faults += [f"{k}: in the view, not in the event store" for k in sorted(set(rows) - set(expected))]
    return faults[:20]
