"""The end of a soak: every view topic, the read replica and the DLQ against the workload's oracle.

The expected values come from the oracle alone (:mod:`scripts.workload.expected_views`), as in
the integration tests: for each view, the latest row per key must carry the oracle's fields
and no other key may exist; revenue-hourly's windows plus the revenue of its ``LateEvent``
dead letters must equal the oracle's windows exactly (a late event is dead-lettered, never
dropped, never counted twice); and each pipeline must have dead-lettered every poison record
but the duplicates exactly once, with a reason of its kind.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pipelines.dlq import headers_to_dict
from pipelines.readback import latest_by_key, read_to_end
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from schemas.codec import EventCodec
from scripts.workload import Emitted, Oracle
from scripts.workload.expected_views import (
    DLQ_REASONS,
    expected_customers,
    expected_dead_letters,
    expected_order_status,
    expected_payments_daily,
    expected_revenue_windows,
    expected_skus,
    late_revenue,
    subset,
)
from state.rocks_store import open_store

__all__ = ["Finding", "Expected", "Rows", "expected_from", "check_rows", "check_revenue", "check_dlq", "topic_rows", "replica_rows",
           "late_letters", "http_rows", "sample_keys", "found_letters", "read_dlq", "OrdersTopic", "check_orders"]

REVENUE = "revenue-hourly"
#: Examples kept per finding: enough to start looking, short enough to read.
EXAMPLES = 3

Rows = dict[str, dict[str, Any]]  # key -> {"row": {...}}, as a view topic's latest value per key


@dataclass
class Finding:
    """One comparison (``what``: e.g. ``view order-status``): how many keys were compared and which differ."""

    what: str
    compared: int
    bad: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.bad += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example[:400])


@dataclass(frozen=True)
class Expected:
    """Everything the oracle says the run must end with."""

    rows: dict[str, dict[str, dict[str, Any]]]  # view -> key -> fields (every view but revenue-hourly)
    windows: dict[str, int]  # revenue-hourly: <currency>:<hour start> -> revenue, non-zero only
    dead_letters: Counter[tuple[str, str]]  # (orderId, poison kind), per pipeline


def expected_from(oracle_path: Path, views: tuple[str, ...]) -> Expected:
    """Read the oracle once."""
    builders: dict[str, Callable[[Oracle], Any]] = {
        "order-status": expected_order_status, "customer-summary": expected_customers, "product-sales": expected_skus,
        "payments-daily": expected_payments_daily,
    }
    with Oracle.open(oracle_path) as oracle:
        rows = {view: builders[view](oracle) for view in views if view != REVENUE}
        windows = {k: v for k, v in expected_revenue_windows(oracle).items() if v} if REVENUE in views else {}
        return Expected(rows, windows, expected_dead_letters(oracle))


def check_rows(what: str, actual: Rows, expected: Mapping[str, dict[str, Any]]) -> Finding:
    """Every expected key present with the oracle's fields, and no key the oracle does not know."""
    finding = Finding(what, len(set(actual) | set(expected)))
    for key, fields in expected.items():
        got = subset(actual.get(key, {}).get("row", {}), fields) if key in actual else None
        if got != fields:
            diff = {f: (got or {}).get(f) for f, v in fields.items() if got is None or got.get(f) != v}
            finding.add(f"{key}: {'missing' if got is None else diff} (oracle: {({f: fields[f] for f in diff} if got else fields)})")
    for key in sorted(set(actual) - set(expected)):
        finding.add(f"{key}: not in the oracle ({actual[key].get('row')})")
    return finding


def check_revenue(what: str, actual: Rows, late: Mapping[str, int], expected: Mapping[str, int]) -> Finding:
    """Window revenue plus the revenue of the late dead letters, against the oracle's windows."""
    revenue = {k: v.get("row", {}).get("revenueMinor", 0) for k, v in actual.items()}
    for key, amount in late.items():
        revenue[key] = revenue.get(key, 0) + amount
    revenue = {k: v for k, v in revenue.items() if v}
    finding = Finding(what, len(set(revenue) | set(expected)))
    for key in sorted(set(revenue) | set(expected)):
        if revenue.get(key) != expected.get(key):
            finding.add(f"{key}: windows+late {revenue.get(key)} (late {late.get(key, 0)}), oracle {expected.get(key)}")
    return finding


def topic_rows(settings: RewindSettings, view: str) -> Rows:
    """The latest value per key of ``view``'s topic (read_committed, to its end)."""
    return latest_by_key(settings.bootstrap(), view_topic(view, prefix=settings.view_topic_prefix))


def replica_rows(replica_dir: Path, view: str, keys: set[str]) -> Rows:
    """The replica store's current row of each of ``keys`` (a key it lacks is left out), read from its closed store."""
    store = open_store(replica_dir, read_only=True)
    try:
        out: Rows = {}
        for key in keys:
            row = store.get(view, key)
            if row is not None:
                out[key] = {"row": dict(row.row)}
        return out
    finally:
        store.close()


def http_rows(url: str, view: str, keys: list[str]) -> Rows:
    """The rows of ``keys`` as `rewind serve` answers them over HTTP (404: left out)."""
    out: Rows = {}
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for key in keys:
            answer = client.get(f"/views/{quote(view, safe='')}/{quote(key, safe='')}")
            if answer.status_code == 200:
                out[key] = {"row": answer.json()["row"]["row"]}
            elif answer.status_code != 404:
                out[key] = {"row": {"http": answer.status_code, "body": answer.text[:200]}}
    return out


def sample_keys(keys: set[str], *, n: int, seed: int) -> list[str]:
    """Up to ``n`` of ``keys``, the same ones for the same seed."""
    return random.Random(seed).sample(sorted(keys), min(n, len(keys)))


def late_letters(oracle_path: Path, dlq: list[Any]) -> tuple[dict[str, int], int]:
    """Revenue per window of revenue-hourly's ``LateEvent`` dead letters (decoded, priced by the oracle), and how many there are."""
    codec = EventCodec()
    late = [codec.decode(m.value()) for m in dlq
            if (h := headers_to_dict(m.headers())).get("rewind.reason.class") == "LateEvent" and h.get("rewind.pipeline") == REVENUE]
    with Oracle.open(oracle_path) as oracle:
        return late_revenue(oracle, late), len(late)


def check_dlq(dlq: list[Any], views: tuple[str, ...], expected: Counter[tuple[str, str]],
              copied: Counter[tuple[str, str]] | None = None) -> dict[str, Finding]:
    """Per pipeline: each poison record (duplicates aside) dead-lettered once with a reason of its kind, nothing else
    (``LateEvent``s are revenue-hourly's and checked with its windows). ``compared`` is the letters expected.

    ``copied``: poison the producer wrote twice (see :class:`OrdersTopic`); its copy may be dead-lettered too, or be
    a counted duplicate (an impossible transition whose seq was applied in between), so either is right."""
    allowed = expected + (copied or Counter())
    kind_of = {reason: kind for kind, reasons in DLQ_REASONS.items() for reason in reasons}
    seen: dict[str, Counter[tuple[str, str]]] = {view: Counter() for view in views}
    findings = {view: Finding(f"dlq {view}", sum(expected.values())) for view in views}
    for msg in dlq:
        h = headers_to_dict(msg.headers())
        view, reason = h.get("rewind.pipeline", "?"), h.get("rewind.reason.class", "?")
        if reason == "LateEvent" or view not in seen:
            continue
        key = msg.key().decode(errors="replace") if msg.key() is not None else "?"
        kind = kind_of.get(reason)
        if kind is None:
            findings[view].add(f"{key}: unexpected {reason}: {h.get('rewind.reason.message', '')}")
            continue
        seen[view][(key, kind)] += 1
    for view, counts in seen.items():
        for key, kind in sorted(counts - allowed):
            findings[view].add(f"{key}: {kind} dead-lettered {counts[(key, kind)]}x, oracle {expected[(key, kind)]}x")
        for (key, kind), n in sorted((expected - counts).items()):
            findings[view].add(f"{key}: {kind} missing from the DLQ ({n}x)")
    return findings


def found_letters(dlq: list[Any], view: str) -> int:
    """How many non-late dead letters ``view``'s pipeline wrote."""
    return sum(1 for m in dlq if (h := headers_to_dict(m.headers())).get("rewind.pipeline") == view and h.get("rewind.reason.class") != "LateEvent")


@dataclass(frozen=True)
class OrdersTopic:
    """The orders topic against what the load generator sent: the oracle is only valid if nothing is missing or foreign."""

    records: int
    missing: int  # sent records not in the topic
    foreign: int  # records in the topic that were never sent
    copies: int  # extra exact copies of sent records (a producer retry): the fold skips a seq it applied, as for the workload's own duplicates
    #: (orderId, poison kind) of the copies that are poison: a pipeline may dead-letter such a copy again
    copied_poison: Counter[tuple[str, str]] = field(default_factory=Counter)


def check_orders(settings: RewindSettings, sent: Sequence[Emitted]) -> OrdersTopic:
    """Read the orders topic to its end and compare it, record by record (key and bytes), with ``sent``."""
    records = read_to_end(settings.bootstrap(), settings.orders_topic, timeout_s=300.0)
    got = Counter((m.key(), m.value()) for m in records)
    want = Counter((r.key, r.value) for r in sent)
    extra = got - want
    poison = {(r.key, r.value): (r.order_id, r.poison.kind) for r in sent if r.poison is not None and r.poison.kind != "duplicate"}
    copied_poison: Counter[tuple[str, str]] = Counter()
    for k, n in extra.items():
        if k in poison:
            copied_poison[poison[k]] += n
    return OrdersTopic(len(records), sum((want - got).values()), sum(n for k, n in extra.items() if k not in want),
                       sum(n for k, n in extra.items() if k in want), copied_poison)


def read_dlq(settings: RewindSettings) -> list[Any]:
    """Every committed record of the run's DLQ topic."""
    return read_to_end(settings.bootstrap(), settings.dlq_topic)
