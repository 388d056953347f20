"""The chaos soak, short: 2 minutes of kill -9s and two broker restarts, then every view, the replica and the DLQ
against the oracle (scripts/soak.py; its own private broker, so the session's broker is never touched).

Deselect with ``-m "not soak"`` (it takes about two and a half minutes). ``python scripts/soak.py --minutes 20``
is the long run.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.projections import VIEW_NAMES
from scripts.kafka_local import LocalKafkaPaths, status

pytestmark = [pytest.mark.soak, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_ends_with_every_view_equal_to_the_oracle(tmp_path: Path) -> None:
    """Scenario: all pipelines, the replica and a 25 events/s workload for 2 minutes; a random process is kill -9ed every
    15-30 s and restarted, the broker is stopped twice for 10 s. We expect exit 0, no mismatch anywhere, no process that
    exited on its own, and at least 2 kills and 2 broker restarts."""
    seed = random.randrange(1_000_000)
    cmd = [sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "2", "--rate", "25", "--kill-every", "15-30",
           "--broker-restarts", "2", "--outage-s", "10", "--settle-timeout-s", "400", "--seed", str(seed), "--run-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=1100)
    finally:
        if proc.poll() is None:  # stopped cleanly: the soak kills its children and its broker on SIGTERM
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=120)
    lines = output.splitlines()
    found = [line for line in lines if line.startswith("REWIND_SOAK ")]
    assert found, f"no summary (seed {seed}):\n" + "\n".join(lines[-40:])
    summary = json.loads(found[-1].removeprefix("REWIND_SOAK "))
    verdict = lines[-1]
    assert proc.returncode == 0, f"seed {seed}: {verdict}\n" + "\n".join(lines[-60:])
    assert summary["mismatches"] == 0 and all(f["bad"] == 0 for f in summary["findings"]), verdict
    assert not summary["self_exits"], verdict
    assert summary["kills_total"] >= 2, summary["events"]
    assert summary["broker_restarts"] == 2, summary["events"]
    assert summary["produced"]["acked"] > 0 and summary["caught_up"], verdict
    assert verdict.startswith("soak passed"), verdict
    # Every view was checked in its topic, the replica and the DLQ; the soak stopped its broker.
    assert {f["what"] for f in summary["findings"]} >= {f"{where} {view}" for view in VIEW_NAMES for where in ("view", "replica", "dlq")}
    assert not any(status(paths=LocalKafkaPaths(run_dir=d))["running"] for d in tmp_path.glob("*/broker")), "the soak left its broker running"
