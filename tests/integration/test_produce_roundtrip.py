"""`rewind produce`'s workload read back from the real broker and compared, event by event, with the oracle."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from schemas import CodecError, EventCodec, UnknownSchemaError
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from tests.integration.support import isolated_settings, read_topic

pytestmark = pytest.mark.integration


def test_every_event_read_back_equals_the_oracle(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Scenario: produce a poisoned workload, consume it all. We expect every event, per order and in order, as the oracle says."""
    settings = isolated_settings(kafka_bootstrap, unique_name, tmp_path)
    workload = generate(WorkloadConfig(seed=9, orders=1500, days=7, poison_rate=0.03))
    produce_workload(settings, workload, progress=False)
    write_oracle(workload, tmp_path / "oracle.sqlite", topic=settings.orders_topic)
    codec = EventCodec()

    got: dict[str, list] = defaultdict(list)
    type_counts: Counter[str] = Counter()
    for msg in read_topic(kafka_bootstrap, settings.orders_topic):
        key = msg.key().decode()
        try:
            event = codec.decode(msg.value())
        except UnknownSchemaError:
            got[key].append(("unknown_schema",))
            continue
        except CodecError:
            got[key].append(("undecodable",))
            continue
        env = event["envelope"]
        assert env["orderId"] == key and msg.timestamp()[1] == env["occurredAt"]
        got[key].append((env["eventId"], env["seq"], env["eventType"], env["occurredAt"]))
        type_counts[env["eventType"]] += 1

    expected: dict[str, list] = defaultdict(list)
    poison_types: Counter[str | None] = Counter()
    with Oracle.open(tmp_path / "oracle.sqlite") as oracle:
        for row in oracle.events():
            if row.poison_kind in ("undecodable", "unknown_schema"):
                expected[row.order_id].append((row.poison_kind,))
            else:
                expected[row.order_id].append((row.event_id, row.seq, row.event_type, row.occurred_at_ms))
                if row.poison_kind is not None:
                    poison_types[row.event_type] += 1
        good_counts = oracle.event_type_counts()
    assert got == expected
    # Counts per type: what decoded = the oracle's good events + decodable poison (impossible transitions, duplicates).
    assert type_counts == Counter(good_counts) + poison_types
