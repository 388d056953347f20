"""`rewind run` on an orders topic that does not exist: one line and exit 1 from either engine, and no topic made.

Asking a broker with auto.create.topics.enable for one topic by name creates it: a mistyped
REWIND_ORDERS_TOPIC used to become an empty one-partition topic that the pipeline then waited on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.topics import admin_client
from tests.integration.support import LIVE_ENGINES

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("engine", LIVE_ENGINES)
def test_a_missing_orders_topic_is_one_line_and_is_not_created(engine: str, kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Scenario: `rewind run order-status` with REWIND_ORDERS_TOPIC naming no topic. We expect exit 1, one `error:` line
    naming the topic and the setting, and the topic still absent from the broker."""
    missing = f"{unique_name}.no-such-orders"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REWIND_ORDERS_TOPIC": missing, "REWIND_ENGINE": engine}
    done = subprocess.run([sys.executable, "-m", "scripts.cli", "run", "order-status", "--state-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, done.stderr[-2000:]
    assert errors == [f"error: orders topic {missing!r} does not exist on {kafka_bootstrap} (REWIND_ORDERS_TOPIC / --orders-topic)"], done.stderr
    assert missing not in admin_client(kafka_bootstrap).list_topics(timeout=10).topics
