"""pipelines.live.resilience without a broker: what counts as a broker failure, the log filter, the watch, and `rewind run`
waiting for a broker that is not there (give up after the limit with one line; SIGTERM ends the wait with exit 0)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from quixstreams.kafka.exceptions import KafkaBrokerUnavailableError

from pipelines.live.resilience import BrokerWatch, ClientNoiseFilter, is_broker_failure
from pipelines.live.stats import PipelineStats

ROOT = Path(__file__).resolve().parents[4]
CLOSED = "127.0.0.1:1"


def _raised_while_handling(first: BaseException, second: BaseException) -> BaseException:
    try:
        try:
            raise first
        except BaseException:
            raise second  # noqa: B904  # the implicit __context__ is what is under test
    except BaseException as exc:
        return exc


def test_broker_failures_are_recognised_through_the_chain() -> None:
    """Scenario: errors as a failed Quix run raises them. We expect client and Quix broker errors, and anything raised
    while handling one (Quix's cleanup), to count as broker failures; a KeyError alone to be a bug."""
    timed_out = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    assert is_broker_failure(timed_out)
    assert is_broker_failure(KafkaBrokerUnavailableError("all brokers down for 60 s"))
    assert is_broker_failure(_raised_while_handling(timed_out, RuntimeError("cleanup failed")))
    assert is_broker_failure(_raised_while_handling(KeyError("customerId"), timed_out))
    assert not is_broker_failure(KeyError("customerId"))
    assert not is_broker_failure(_raised_while_handling(ValueError("a"), KeyError("b")))


def _record(name: str, message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_noise_filter_drops_connection_lines_of_the_clients_only() -> None:
    """Scenario: lines librdkafka and Quix log during an outage, and others. We expect the connection noise dropped and counted."""
    noise = ClientNoiseFilter()
    dropped = [
        _record("quixstreams.kafka.consumer", 'Kafka consumer error: 2/2 brokers are down code="-187"'),
        _record("quixstreams.kafka.producer", "FAIL [rdkafka#producer-31] [thrd:TxnCoordinator]: Connect to ipv4#127.0.0.1:1 failed: Connection refused"),
        _record("quixstreams.kafka.consumer", "SESSTMOUT [rdkafka#consumer-30] [thrd:main]: Consumer group session timed out", logging.WARNING),
    ]
    kept = [
        _record("quixstreams.app", "Failed to process a Row: partition=\"orders[3]\" offset=\"7\""),
        _record("rewind.live", "pipeline x: broker 127.0.0.1:1 unreachable for 5 s (Connection refused)", logging.WARNING),
    ]
    assert [noise.filter(r) for r in dropped] == [False] * len(dropped)
    assert [noise.filter(r) for r in kept] == [True] * len(kept)
    assert noise.dropped == len(dropped)


def test_counters_of_runs_add_up() -> None:
    """Scenario: two runs' counters. We expect their sum, the invariant events_in == applied + duplicates + dead_lettered kept."""
    totals = PipelineStats("v")
    first, second = PipelineStats("v", events_in=5, applied=3, duplicates=1, dead_lettered=1), PipelineStats("v", events_in=2, applied=2)
    totals.add_counts(first)
    totals.add_counts(second)
    assert (totals.events_in, totals.applied, totals.duplicates, totals.dead_lettered) == (7, 5, 1, 1)


def test_watch_reports_an_unreachable_broker_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """Scenario: nothing listens at the address. We expect the watch to say so about once per interval, not per probe."""
    caplog.set_level(logging.INFO, logger="rewind.live")
    watch = BrokerWatch(CLOSED, what="test", report_interval_s=1.0, probe_timeout_s=0.3).start()
    try:
        before = watch.probe_soon()
        deadline = time.monotonic() + 30
        while watch.reports < 3:
            assert time.monotonic() < deadline, "no reports"
            time.sleep(0.05)
        assert watch.answered_since(before) is False
        down_for = watch.down_for_s()
        assert down_for is not None and down_for >= 1.5
        lines = [r.getMessage() for r in caplog.records if "unreachable for" in r.getMessage()]
        assert len(lines) == watch.reports and len(lines) <= down_for / 1.0 + 2
        assert all(CLOSED in line for line in lines)
    finally:
        watch.stop()


def _rewind_run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": CLOSED, "REWIND_CONNECT_TIMEOUT_S": "1", "REWIND_STATE_DIR": str(tmp_path / "state"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("REWIND_OUTAGE_LIMIT_S", None)
    return subprocess.Popen([sys.executable, "-m", "scripts.cli", "run", "order-status", "--outage-report-s", "1", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_gives_up_after_the_outage_limit_with_one_line(tmp_path: Path) -> None:
    """Scenario: `rewind run --outage-limit-s 3` and no broker. We expect it to wait, say so each second, then exit 1
    with one `error:` line on stderr and no traceback."""
    proc = _rewind_run(tmp_path, "--outage-limit-s", "3")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "Traceback" not in out
    assert lines[-1].startswith("error: ") and "giving up" in lines[-1] and CLOSED in lines[-1], err
    reports = [line for line in lines if "unreachable for" in line]
    assert 2 <= len(reports) <= 6, err


def test_sigterm_while_waiting_for_the_broker_stops_at_once_with_exit_0(tmp_path: Path) -> None:
    """Scenario: `rewind run` waiting for a broker that is not there gets SIGTERM. We expect exit 0 within a few seconds."""
    proc = _rewind_run(tmp_path)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # wait until it is in the outage wait
            if "unreachable for" in line:
                break
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # still running: say where (the CLI dumps its stacks on SIGUSR1), then fail
            proc.send_signal(signal.SIGUSR1)
            try:
                proc.communicate(timeout=5)  # only a failure's diagnosis: collects the dump (none is lost on retry)
            except subprocess.TimeoutExpired:
                pass
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"no exit within 60 s of SIGTERM; its stacks and last lines:\n{err[-6000:]}") from None
        assert proc.returncode == 0, err
        assert time.monotonic() - started < 5, "slow to stop"
        assert out.strip().startswith("REWIND_STATS "), out
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
