"""`rewind orders ...` as a subprocess: commands against a SQLite event store, bad arguments, and `serve` stopped by a signal (no broker)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def rewind(*args: str, database: Path, cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REWIND_DATABASE_URL": f"sqlite:///{database}"}
    return subprocess.run([sys.executable, "-m", "scripts.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)


def test_commands_run_against_the_event_store(tmp_path: Path) -> None:
    """Scenario: place an order, pay it (twice, one command id), show it. We expect JSON answers, the retry marked and identical, and two events."""
    db = tmp_path / "orders.sqlite"
    placed = rewind("orders", "place", "--customer", "c1", "--item", "A:2:150", "--item", "B:1:99", "--currency", "EUR", "--order-id", "o-1",
                    database=db, cwd=tmp_path)
    assert placed.returncode == 0, placed.stderr
    assert json.loads(placed.stdout)["order"]["totalMinor"] == 399
    paid = rewind("orders", "pay", "o-1", "--command-id", "c-pay", database=db, cwd=tmp_path)
    paid_again = rewind("orders", "pay", "o-1", "--command-id", "c-pay", database=db, cwd=tmp_path)
    assert paid.returncode == paid_again.returncode == 0
    assert paid_again.stdout == paid.stdout and json.loads(paid.stdout)["status"] == "PAYMENT_AUTHORIZED"
    assert "a retry" in paid_again.stderr and "a retry" not in paid.stderr
    shown = rewind("orders", "show", "o-1", database=db, cwd=tmp_path)
    assert shown.returncode == 0
    assert [(e["seq"], e["eventType"]) for e in json.loads(shown.stdout)["events"]] == [(1, "OrderPlaced"), (2, "PaymentAuthorized")]


def test_a_refused_command_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Scenario: ship an order that is only placed, and pay one that does not exist. We expect exit 1 and one line each saying why."""
    db = tmp_path / "orders.sqlite"
    assert rewind("orders", "place", "--customer", "c1", "--item", "A:1:5", "--currency", "EUR", "--order-id", "o-1", database=db, cwd=tmp_path).returncode == 0
    for args, needle in [(("ship", "o-1", "--carrier", "DHL", "--tracking-number", "1"), "not allowed in status PLACED"),
                         (("pay", "o-2"), "order o-2 does not exist")]:
        refused = rewind("orders", *args, database=db, cwd=tmp_path)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.strip().count("\n") == 0 and needle in refused.stderr, refused.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (("place", "--customer", "c", "--item", "A:-2:150", "--currency", "EUR"), "items[0].quantity -2"),
        (("place", "--customer", "c", "--item", "A:2:1.5", "--currency", "EUR"), "--item 'A:2:1.5'"),
        (("place", "--customer", "c", "--item", "A:2:150", "--currency", "eur"), "'eur' is not a known ISO 4217"),
        (("place", "--customer", "c", "--item", "A:2:150", "--currency", "EUR", "--order-id", "a/b"), "--order-id"),
        (("pay", "o/1"), "ORDER_ID 'o/1'"),
        (("pay", "o-1", "--amount", "-5"), "--amount"),
        (("refund", "o-1", "--item", "A", "--amount", "1", "--reason", "r"), "--item 'A'"),
        (("release", "o-1", "--reason", ""), "--reason"),
        (("teleport", "o-1"), "teleport"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_opened(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    """Scenario: a negative quantity or amount, a float price, an unknown currency, a bad id or line, an unknown command.
    We expect a non-zero exit, one line naming the problem, and no database file."""
    db = tmp_path / "run" / "orders.sqlite"
    refused = rewind("orders", *args, database=db, cwd=tmp_path)
    assert refused.returncode != 0 and needle in refused.stderr, refused.stderr
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    assert not db.parent.exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_and_stops_cleanly_on_a_signal(tmp_path: Path, stop: signal.Signals) -> None:
    """Scenario: `rewind orders serve` on a free port, one order placed over HTTP, then SIGTERM or SIGINT. We expect exit 0 within seconds."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REWIND_DATABASE_URL": f"sqlite:///{tmp_path / 'orders.sqlite'}"}
    server = subprocess.Popen([sys.executable, "-m", "scripts.cli", "orders", "serve", "--port", str(port), "--log-level", "warning"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not answer /healthz within 60 s"
            time.sleep(0.1)  # polling interval, bounded by the deadline above
        body = {"commandId": "c-1", "orderId": "o-1", "customerId": "c", "items": [{"sku": "A", "quantity": 1, "unitPriceMinor": 5}], "currency": "EUR"}
        placed = httpx.post(f"{url}/orders", json=body, timeout=10)
        assert placed.status_code == 201 and placed.json()["status"] == "PLACED"
        assert httpx.get(f"{url}/docs", timeout=10).status_code == 200
        server.send_signal(stop)
        _, stderr = server.communicate(timeout=30)
        assert server.returncode == 0, stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


@pytest.mark.parametrize("command", [("orders", "pay", "o-1"), ("orders", "show", "o-1"), ("orders", "serve", "--port", str(_free_port()))])
def test_a_database_that_is_down_is_one_line_and_exit_1(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Scenario: REWIND_DATABASE_URL names a PostgreSQL that does not listen. We expect exit 1 with one line, within seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REWIND_DATABASE_URL": f"postgresql://rewind@127.0.0.1:{_free_port()}/orders"}
    started = time.monotonic()
    refused = subprocess.run([sys.executable, "-m", "scripts.cli", *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "cannot migrate the event store" in refused.stderr, refused.stderr
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    assert time.monotonic() - started < 60
