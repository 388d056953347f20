"""`rewind outbox relay` through a broker outage: it keeps running, loses nothing, reports the outbox growing, and
publishes once the broker is back; SIGTERM during the outage exits 0 at once; a relay started during it waits.

The broker is a private one (tests.integration.private_broker): the session broker is shared and never stopped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.orders.database import migrate, open_database
from pipelines.orders.relay_outbox import outbox_lag
from tests.integration.private_broker import private_broker
from tests.integration.support import wait_until
from tests.integration.test_outbox_relay import (  # noqa: F401  # _kill_leftover_relays: an autouse fixture, used by being imported
    RelayProcess,
    _kill_leftover_relays,
    check_topic,
    outbox_status,
    published_rows,
    workload_rows,
    write_rows,
)

pytestmark = pytest.mark.integration


def test_relay_rides_out_a_broker_outage(unique_name: str, tmp_path: Path) -> None:
    """Scenario: the broker stops while the relay runs and events keep being committed; the relay gets SIGTERM during the
    outage and another starts while the broker is still down; then the broker comes back. We expect the relay alive and
    reporting unacknowledged rows and a growing lag, exit 0 within a few seconds of SIGTERM, the second relay waiting
    and saying so, and in the end every row in the topic (copies only of the batch abandoned at the stop)."""
    database_url = f"sqlite:///{tmp_path / 'orders.sqlite'}"
    engine = open_database(database_url)
    migrate(engine)
    rows = workload_rows(300, seed=3)
    first, during, last = rows[:400], rows[400:900], rows[900:]
    batch = 200
    args = ("--batch-size", str(batch), "--outage-report-s", "2", "--relay-id", "relay-a")
    with private_broker(tmp_path / "kafka") as broker:
        start = {"bootstrap": broker.bootstrap, "database_url": database_url, "topic": unique_name}
        relay = RelayProcess.start(**start, log_path=tmp_path / "relay-a.log", args=args)
        write_rows(engine, first)
        wait_until(lambda: published_rows(engine) == len(first), timeout_s=120, what="the first rows to be published")

        broker.stop()
        write_rows(engine, during)
        wait_until(lambda: "unacknowledged for" in relay.log(), timeout_s=60, what="the relay to report its unacknowledged batch")
        wait_until(lambda: f"lag {len(during)} rows" in relay.log(), timeout_s=30, what="the progress line to report the grown lag")
        assert relay.alive() and published_rows(engine) == len(first)
        assert outbox_status(database_url)["unpublished_rows"] == len(during)
        stats = relay.terminate(within_s=6)
        assert stats["published"] == len(first) and 0 < stats["abandoned"] <= batch

        second = RelayProcess.start(**start, log_path=tmp_path / "relay-b.log", args=(*args[:-1], "relay-b"))
        wait_until(lambda: "unreachable for" in second.log(), timeout_s=60, what="the second relay to say the broker is unreachable")
        write_rows(engine, last)
        assert second.alive() and outbox_lag(engine).rows == len(during) + len(last)

        broker.start()
        wait_until(lambda: outbox_lag(engine).rows == 0, timeout_s=120, what="the outbox to drain once the broker is back")
        assert "answers again" in second.log()
        stats = second.terminate()
        assert stats["published"] == len(during) + len(last)
        check = check_topic(broker.bootstrap, unique_name, rows)
    engine.dispose()
    lags = [int(n) for n in re.findall(r"lag (\d+) rows", relay.log())]
    print(f"lag during the outage: {sorted(set(lags))}; {len(rows)} rows, {check.duplicates} published twice (abandoned batch: {batch})")
    assert check.duplicates <= batch
