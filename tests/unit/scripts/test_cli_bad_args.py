"""No bad argument of `rewind` prints a traceback: one line on stderr naming it, a non-zero exit, nothing done.

Each row runs the real CLI in a subprocess (``python -m scripts.cli``, as a user would) against a
closed broker (127.0.0.1:1), with the state and registry run dirs in the test's tmp dir, so nothing
real is touched. Every row failed before arguments were checked up front: a traceback, a failure
only after producing or reading the log, several lines of librdkafka logging, or a silent success.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.errors import ConfigError
from scripts.cli_common import build_settings

ROOT = Path(__file__).resolve().parents[3]
CLOSED = "http://127.0.0.1:1/apis/ccompat/v7"

# (arguments, what the one error line must contain). Placeholders: {tmp} the test's tmp dir,
# {file} a regular file in it, {dir} an existing directory in it, {busy_port} a port a socket listens on.
# /proc/nope/...: unwritable even for root, who ignores permission bits.
ROWS: list[tuple[str, list[str], str]] = [
    # kafka / registry: a contradictory command line is refused even when an external service makes it moot
    ("kafka-equal-ports", ["kafka", "up", "--port", "9500", "--controller-port", "9500"], "must differ"),
    ("registry-equal-ports", ["registry", "up", "--port", "18555", "--management-port", "18555", "--url", CLOSED], "must differ"),
    ("registry-run-dir-file", ["registry", "up", "--run-dir", "{file}", "--url", CLOSED], "--run-dir"),
    # postgres: checked before a run dir or cluster is made
    ("postgres-port-zero", ["postgres", "up", "--port", "0"], "postgres_port"),
    ("postgres-port-busy", ["postgres", "up", "--port", "{busy_port}"], "is in use by another process"),
    ("postgres-run-dir-file", ["postgres", "up", "--run-dir", "{file}"], "--run-dir"),
    # produce: every argument before the broker, so no record is ever written without its oracle
    ("produce-start-huge-negative", ["produce", "--orders", "1", "--start", "-99999999999999", "--oracle", "{tmp}/o/o.sqlite"], "--start"),
    ("produce-start-before-1970", ["produce", "--orders", "1", "--start", "-5", "--oracle", "{tmp}/o/o.sqlite"], "--start"),
    ("produce-days-inf", ["produce", "--orders", "1", "--days", "inf", "--oracle", "{tmp}/o/o.sqlite"], "--days"),
    ("produce-rate-inf", ["produce", "--orders", "1", "--rate", "inf", "--oracle", "{tmp}/o/o.sqlite"], "--rate"),
    ("produce-topic-illegal", ["produce", "--orders", "1", "--topic", "a b", "--oracle", "{tmp}/o/o.sqlite"], "--topic"),
    ("produce-oracle-unwritable", ["produce", "--orders", "1", "--oracle", "/proc/nope/o.sqlite"], "--oracle"),
    ("produce-oracle-is-dir", ["produce", "--orders", "1", "--oracle", "{dir}"], "--oracle"),
    # run
    ("run-state-dir-file", ["run", "order-status", "--state-dir", "{file}"], "--state-dir"),
    ("run-state-dir-unwritable", ["run", "order-status", "--state-dir", "/proc/nope/x"], "--state-dir"),
    ("run-group-empty", ["run", "order-status", "--group", ""], "--group"),
    ("run-progress-interval-inf", ["run", "order-status", "--progress-interval-s", "inf"], "--progress-interval-s"),
    ("run-view-prefix-illegal", ["run", "order-status", "--view-topic-prefix", "a b"], "--view-topic-prefix"),
    ("run-metrics-port-zero", ["run", "order-status", "--metrics-port", "0"], "metrics_port"),
    ("run-metrics-port-huge", ["run", "order-status", "--metrics-port", "65536"], "metrics_port"),
    ("run-metrics-port-text", ["run", "order-status", "--metrics-port", "9401x"], "--metrics-port"),
    ("run-metrics-port-busy", ["run", "order-status", "--metrics-port", "{busy_port}"], "is already in use"),
    # outbox relay: the metrics port before the database (no SQLite file is created)
    ("relay-metrics-port-zero", ["outbox", "relay", "--database-url", "sqlite:///{tmp}/o.sqlite", "--metrics-port", "0"], "metrics_port"),
    ("relay-metrics-port-busy", ["outbox", "relay", "--database-url", "sqlite:///{tmp}/o.sqlite", "--metrics-port", "{busy_port}"],
     "--metrics-port"),
    # replay
    ("replay-as-of-double-dash", ["replay", "order-status", "--as-of=--5"], "--as-of"),
    ("replay-as-of-year-10000", ["replay", "order-status", "--as-of", "253402300800000"], "--as-of"),
    ("replay-workers-huge", ["replay", "order-status", "--workers", "100000000"], "--workers"),
    ("replay-into-unwritable", ["replay", "order-status", "--into", "/proc/nope/x"], "--into"),
    ("replay-into-exists", ["replay", "order-status", "--into", "{dir}"], "--into"),
    ("replay-views-dir-file", ["replay", "order-status", "--views-dir", "{file}"], "--views-dir"),
    ("replay-dlq-topic-empty", ["replay", "order-status", "--dlq-topic", ""], "--dlq-topic"),
    ("replay-closed-broker", ["replay", "order-status", "--no-progress"], "no Kafka broker answered"),
    # snapshot
    ("snapshot-unknown-view", ["snapshot", "nope"], "unknown view"),
    ("snapshot-at-double-dash", ["snapshot", "order-status", "--at=--5"], "--at"),
    ("snapshot-from-file", ["snapshot", "order-status", "--from", "{file}"], "--from"),
    ("snapshot-workers-huge", ["snapshot", "order-status", "--at", "5", "--workers", "100000000"], "--workers"),
    # serve: checked before the replica opens its store and consumes
    ("serve-port-busy", ["serve", "--port", "{busy_port}"], "--port"),
    ("serve-replica-dir-file", ["serve", "--replica-dir", "{file}"], "--replica-dir"),
    # query (against a real replica store, where the out-of-range time used to reach the store)
    ("query-as-of-year-10000", ["query", "order-status", "42", "--as-of", "253402300800000"], "--as-of"),
    ("query-as-of-year-minus-1199", ["query", "order-status", "42", "--as-of", "-99999999999999"], "--as-of"),
    # dlq list|show: ids, filters, limits and the topic name before the broker (a closed one here)
    ("dlq-show-id-malformed", ["dlq", "show", "3-17"], "partition:offset"),
    ("dlq-show-id-past-int32", ["dlq", "show", "2147483648:0"], "partition 0 to"),
    ("dlq-list-limit-negative", ["dlq", "list", "--limit", "-1"], "--limit"),
    ("dlq-list-reason-empty", ["dlq", "list", "--reason", ""], "--reason"),
    ("dlq-list-timeout-nan", ["dlq", "list", "--timeout-s", "nan"], "--timeout-s"),
    ("dlq-list-topic-illegal", ["dlq", "list", "--dlq-topic", "a b"], "--dlq-topic"),
    ("dlq-list-closed-broker", ["dlq", "list"], "no Kafka broker answered"),
    # dlq redrive: what to redrive, and the topics, before the broker (nothing is appended)
    ("dlq-redrive-both", ["dlq", "redrive", "--order", "o-1", "--reason", "UnknownSchemaError"], "not both"),
    ("dlq-redrive-neither", ["dlq", "redrive"], "--order ORDER_ID or --reason"),
    ("dlq-redrive-order-empty", ["dlq", "redrive", "--order", " "], "--order"),
    ("dlq-redrive-orders-topic-illegal", ["dlq", "redrive", "--order", "o-1", "--orders-topic", "a/b"], "--orders-topic"),
    ("dlq-redrive-dlq-topic-illegal", ["dlq", "redrive", "--reason", "X", "--dlq-topic", "a b"], "--dlq-topic"),
    ("dlq-redrive-closed-broker", ["dlq", "redrive", "--order", "o-1"], "no Kafka broker answered"),
]


@dataclass(frozen=True)
class Outcome:
    """What one row's command did."""

    returncode: int
    stderr: str
    files_before: frozenset[Path]
    files_after: frozenset[Path]


def _files(root: Path) -> frozenset[Path]:
    return frozenset(p.relative_to(root) for p in root.rglob("*"))


def _run_row(root: Path, args: list[str], busy_port: int) -> Outcome:
    (root / "afile").write_text("not a directory\n")
    (root / "adir").mkdir()
    if args[0] == "query":
        _replica(root / "state" / "replica")
    env = {k: v for k, v in os.environ.items() if k != "REWIND_SCHEMA_REGISTRY_URL"}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REWIND_CONNECT_TIMEOUT_S": "2",
        "REWIND_STATE_DIR": str(root / "state"), "REWIND_REGISTRY_RUN_DIR": str(root / "registry"),
        "REWIND_POSTGRES_RUN_DIR": str(root / "pg"),
    })
    argv = [a.format(tmp=root, file=root / "afile", dir=root / "adir", busy_port=busy_port) for a in args]
    before = _files(root)
    done = subprocess.run([sys.executable, "-m", "scripts.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return Outcome(done.returncode, done.stderr, before, _files(root))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Every row's outcome, each in its own tmp dir. The processes run a few at a time: each spends ~1 s importing."""
    with socket.socket() as listener, ThreadPoolExecutor(max_workers=4) as pool:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        futures = {name: pool.submit(_run_row, tmp_path_factory.mktemp(name), args, port) for name, args, _ in ROWS}
        yield {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name,expected", [(n, e) for n, _, e in ROWS], ids=[n for n, _, _ in ROWS])
def test_bad_argument_is_one_line_and_does_nothing(outcomes: dict[str, Outcome], name: str, expected: str) -> None:
    """Scenario: one bad argument, closed broker. We expect exit != 0, one `error:` line naming it, no new file."""
    done = outcomes[name]
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert done.files_after == done.files_before


def test_empty_bootstrap_is_refused_not_taken_for_the_local_broker() -> None:
    """Scenario: --bootstrap '' (click ignores an empty env var, so only a flag gives one). We expect a ConfigError.

    In-process: before the fix, `rewind kafka up --bootstrap ''` started the local broker.
    """
    with pytest.raises(ConfigError, match=r"kafka_bootstrap_servers .*empty"):
        build_settings(kafka_bootstrap_servers=" ")


def _replica(path: Path) -> None:
    from state.contracts import SourcePosition, ViewUpdate
    from state.rocks_store import open_store

    t = 1_795_273_200_000
    row = {"orderId": "42", "status": "PLACED", "lastSeq": 1, "validFrom": t}
    update = ViewUpdate("order-status", "42", row, t, t, None, "42", 1, SourcePosition("orders", 0, 0), SourcePosition("view.order-status", 0, 0))
    store = open_store(path)
    store.apply([update], position={"view.order-status": {0: 1}})
    store.close()
