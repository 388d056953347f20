"""The main job's command side: the order service and its outbox relay as child processes, the
workload driven through them as commands, and the views checked against the service's event store.

:class:`CommandSide` is used by :mod:`scripts.main_job` (``rewind demo``, ``--source service``):

1. :meth:`~CommandSide.start`: a fresh SQLite event store under the run directory,
   `rewind orders serve` on a free loopback port (waited for until ``/healthz`` answers), then
   `rewind outbox relay` publishing to the run's orders topic.
2. :meth:`~CommandSide.drive`: every good event of the workload posted as its command
   (:mod:`scripts.workload.commands`, :mod:`scripts.workload.sender`), with progress.
3. :meth:`~CommandSide.wait_published`: until the outbox lag is 0.
4. :meth:`~CommandSide.bad_input`: a few commands the service must refuse, each checked to
   have written nothing.
5. :meth:`~CommandSide.check_views`: the views against the event store (independently of the fold).
6. :meth:`~CommandSide.stop`: SIGTERM to both children (always, on failure too).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, func, select

from pipelines.live.supervisor import terminate
from pipelines.orders.relay import outbox_lag
from pipelines.orders.tables import commands as commands_table
from pipelines.orders.tables import events, outbox
from pipelines.readback import latest_by_key
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from schemas import RewindError
from scripts.workload import Oracle, Workload
from scripts.workload.commands import workload_commands
from scripts.workload.sender import SendReport, send_commands

__all__ = ["CommandSide", "CommandSideFailed", "ChildProcess", "STATUS_AFTER_LAST"]

#: The status an order is in after its last event, by that event's type: written here, by hand, from
#: the lifecycle table in DESIGN/README, so the check does not share the fold's code.
STATUS_AFTER_LAST: Mapping[str, str] = {
    "OrderPlaced": "PLACED",
    "PaymentAuthorized": "PAYMENT_AUTHORIZED",
    "PaymentFailed": "PAYMENT_FAILED",
    "InventoryReserved": "INVENTORY_RESERVED",
    "InventoryReleased": "INVENTORY_RELEASED",
    "OrderShipped": "SHIPPED",
    "OrderDelivered": "DELIVERED",
    "OrderCancelled": "CANCELLED",
    "RefundIssued": "REFUNDED",
}


class CommandSideFailed(RewindError):
    """The order service or the relay did not start, died, or did not catch up; the message says which, with its log's tail."""


@dataclass
class ChildProcess:
    """A `rewind ...` child process writing its output to a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, args: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> ChildProcess:
        """Start ``python -m scripts.cli ARGS`` with ``env`` added to this process's environment."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", *args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        return cls(name, proc, log_path)

    def alive(self) -> bool:
        """True while it runs."""
        return self.proc.poll() is None

    def stop(self, *, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout_s`` (then SIGKILL), and return its exit code."""
        return terminate(self.proc, timeout_s=timeout_s)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def dead(self, what: str) -> CommandSideFailed:
        """The error for a child that exited while it was needed."""
        return CommandSideFailed(f"{self.name} exited (code {self.proc.returncode}) {what}:\n{self.log_tail()}")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _poll_until(done: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Call ``done`` until it is true (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)  # polling a condition with a deadline, not synchronisation
    return True


class CommandSide:
    """The order service and its relay for one main-job run (steps in the module docstring)."""

    def __init__(self, settings: RewindSettings, *, run_dir: Path, console: Console, check: Callable[[bool, str], None],
                 workers: int = 8) -> None:
        self.settings = settings
        self.run_dir = run_dir.resolve()
        self.console = console
        self.check = check
        self.workers = workers
        self.database_url = f"sqlite:///{self.run_dir / 'orders.sqlite'}"
        self.base_url = ""
        self.children: list[ChildProcess] = []
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """A plain engine on the event store, for reads (no BEGIN IMMEDIATE: it never queues behind the service)."""
        if self._engine is None:
            self._engine = create_engine(self.database_url)
        return self._engine

    # Step 1
    def start(self) -> None:
        """Start the order service on a fresh event store, wait for /healthz, then start the relay."""
        (self.run_dir / "orders.sqlite").unlink(missing_ok=True)
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = {"REWIND_DATABASE_URL": self.database_url}
        service = ChildProcess.start("the order service", ["orders", "serve", "--port", str(port), "--log-level", "warning"],
                                     env=env, log_path=self.run_dir / "logs" / "orders-service.log")
        self.children.append(service)

        def healthy() -> bool:
            if not service.alive():
                raise service.dead("on start")
            try:
                return httpx.get(f"{self.base_url}/healthz", timeout=2.0).status_code == 200
            except httpx.TransportError:
                return False

        if not _poll_until(healthy, timeout_s=60):
            raise CommandSideFailed(f"the order service did not answer {self.base_url}/healthz within 60 s:\n{service.log_tail()}")
        relay_env = {
            **env, "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap(), "REWIND_ORDERS_TOPIC": self.settings.orders_topic,
            "REWIND_ORDERS_PARTITIONS": str(self.settings.orders_partitions),
        }
        self.children.append(ChildProcess.start("the outbox relay", ["outbox", "relay", "--relay-id", "demo-relay", "--progress-interval-s", "5"],
                                                env=relay_env, log_path=self.run_dir / "logs" / "outbox-relay.log"))
        self.console.print(f"order service at {self.base_url} (event store {self.database_url}), outbox relay -> {self.settings.orders_topic}")

    # Step 2
    def drive(self, workload: Workload) -> SendReport:
        """Post every good event of ``workload`` as its command; check that each was accepted."""
        commands = list(workload_commands(workload.records))
        printed = [time.monotonic()]
        with self.console.status("sending commands") as status:
            def progress(report: SendReport) -> None:
                for child in self.children:
                    if not child.alive():
                        raise child.dead("while commands were sent")
                line = (f"{report.done:,}/{report.total:,} commands, {report.commands_per_s:,.0f}/s, {report.refused_total} refused, "
                        f"{report.retries} retried; outbox lag {outbox_lag(self.engine).rows:,} rows")
                status.update(line)
                if not self.console.is_terminal and time.monotonic() - printed[0] >= 10:  # no live status line: a line every 10 s
                    printed[0] = time.monotonic()
                    self.console.print(line)

            report = send_commands(self.base_url, commands, workers=self.workers, progress=progress)
        self.console.print(report.summary())
        for line in report.refusals:
            self.console.print(f"  [red]{line}[/]")
        self.check(report.accepted == len(commands) and report.done == len(commands),
                   f"all {len(commands):,} commands accepted by the order service ({report.commands_per_s:,.0f} commands/s, {self.workers} workers)")
        return report

    # Step 3
    def wait_published(self, *, timeout_s: float = 300.0) -> None:
        """Wait until the relay has published every outbox row (lag 0)."""
        relay = self.children[-1]
        started = time.monotonic()

        def caught_up() -> bool:
            if not relay.alive():
                raise relay.dead("before the outbox was published")
            return outbox_lag(self.engine).rows == 0

        with self.console.status("waiting for the outbox relay"):
            ok = _poll_until(caught_up, timeout_s=timeout_s)
        rows = self._count(outbox)
        self.check(ok, f"the outbox relay published all {rows:,} outbox rows (lag 0, {time.monotonic() - started:.1f} s after the last command)")

    def _count(self, table: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def _counts(self) -> tuple[int, int, int]:
        return self._count(events), self._count(outbox), self._count(commands_table)

    # Step 4
    def bad_input(self, oracle: Oracle) -> None:
        """Commands the service must refuse (refund above what was paid, ship before reserve, ...): each gets its 4xx and writes nothing."""
        finals = list(oracle.final_orders())
        delivered = next((o for o in finals if str(o.status) == "DELIVERED"), None)
        # Shipping needs INVENTORY_RESERVED: best shown on an order not reserved yet, else on any order past it.
        unreserved = next((o for o in finals if str(o.status) in ("PLACED", "PAYMENT_AUTHORIZED", "PAYMENT_FAILED")), None) or \
            next((o for o in finals if str(o.status) != "INVENTORY_RESERVED"), None)
        tries: list[tuple[str, str, dict[str, Any], int]] = []
        if delivered is not None:
            sku = delivered.items[0][0]
            tries.append((f"refund {delivered.total_minor + 1} of order {delivered.order_id} (paid {delivered.total_minor})",
                          f"/orders/{delivered.order_id}/refund",
                          {"items": [{"sku": sku, "quantity": 1}], "amountMinor": delivered.total_minor + 1, "reason": "demo"}, 422))
        if unreserved is not None:
            tries.append((f"ship order {unreserved.order_id} (status {unreserved.status}, not INVENTORY_RESERVED)",
                          f"/orders/{unreserved.order_id}/shipment", {"carrier": "DHL", "trackingNumber": "DEMO"}, 409))
            tries.append((f"a payment of order {unreserved.order_id} stamped in 2100", f"/orders/{unreserved.order_id}/payment",
                          {"occurredAt": 4_102_444_800_000}, 422))
        tries.append(("an order with a negative quantity", "/orders",
                      {"orderId": "demo-bad-order", "customerId": "c", "currency": "EUR", "items": [{"sku": "s", "quantity": -1, "unitPriceMinor": 5}]}, 422))
        tries.append(("an order in the currency EUX", "/orders",
                      {"orderId": "demo-bad-order", "customerId": "c", "currency": "EUX", "items": [{"sku": "s", "quantity": 1, "unitPriceMinor": 5}]}, 422))
        tries.append(("deliver an order that does not exist", "/orders/no-such-order/delivery", {}, 404))
        before = self._counts()
        table = Table("bad command", "expected", "answer", "detail", title="bad input: refused, nothing written")
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            for n, (what, path, body, expected) in enumerate(tries, start=1):
                response = client.post(path, json={"commandId": f"demo-bad-{n}", **body})
                detail = response.json().get("detail", "") if response.headers.get("content-type") == "application/json" else response.text
                table.add_row(what, str(expected), str(response.status_code), str(detail)[:110])
                self.check(response.status_code == expected, f"{what}: {expected}")
        self.console.print(table)
        with self.engine.connect() as conn:
            recorded = conn.execute(select(func.count()).where(commands_table.c.command_id.like("demo-bad-%"))).scalar_one()
        after = self._counts()
        self.check(after == before and recorded == 0,
                   f"the {len(tries)} refused commands wrote nothing (events, outbox, commands: {after[0]:,}, {after[1]:,}, {after[2]:,})")

    # Step 5
    def check_views(self, *, topic_events: Counter[tuple[str, int, str]], topic_types: Counter[str], poll: Callable[..., list[str]]) -> None:
        """The log and the views against the service's own event store.

        ``topic_events`` counts the (orderId, seq, eventId) read back from the orders topic,
        ``topic_types`` its events per type; ``poll`` is the main job's poll-until-agreed.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(select(events.c.order_id, events.c.seq, events.c.event_type, events.c.event_id)).all()
        stored = {(r.order_id, r.seq, r.event_id) for r in rows}
        stored_types = Counter(r.event_type for r in rows)
        last: dict[str, tuple[int, str]] = {}
        for r in rows:
            if r.order_id not in last or r.seq > last[r.order_id][0]:
                last[r.order_id] = (r.seq, r.event_type)
        copies = sum(n - 1 for n in topic_events.values() if n > 1)
        self.check(set(topic_events) == stored,
                   f"the orders topic holds exactly the event store's {len(stored):,} events (orderId, seq, eventId)"
                   f" ({copies} published twice, harmless)" + _diff(set(topic_events), stored))
        table = Table("event type", "event store", "orders topic", title="events per type: the service's event store vs the log")
        for event_type in STATUS_AFTER_LAST:
            table.add_row(event_type, f"{stored_types[event_type]:,}", f"{topic_types[event_type]:,}")
        self.console.print(table)
        self.check(stored_types == topic_types, "every event type's count in the event store equals the orders topic's")
        view = view_topic("order-status", prefix=self.settings.view_topic_prefix)
        state: dict[str, int] = {}

        def mismatched() -> list[str]:
            latest = latest_by_key(self.settings.bootstrap(), view)
            state["rows"] = len(latest)
            bad = [order_id for order_id, (seq, event_type) in last.items()
                   if (latest.get(order_id, {}).get("row", {}).get("lastSeq"), latest.get(order_id, {}).get("row", {}).get("status"))
                   != (seq, STATUS_AFTER_LAST[event_type])]
            return bad + sorted(set(latest) - set(last))

        bad = poll(mismatched, timeout_s=120)
        self.check(not bad, f"order-status: each of the {len(last):,} orders' lastSeq and status are the event store's last seq and the status"
                            f" after its last event type ({state.get('rows', 0):,} view rows)" + (f"; {len(bad)} differ, e.g. {bad[:3]}" if bad else ""))

    # Step 6
    def stop(self) -> None:
        """SIGTERM the relay, then the service; print the relay's last line; check both exited 0."""
        for child in reversed(self.children):
            code = child.stop()
            self.check(code == 0, f"{child.name} stopped on SIGTERM (exit code {code})")
            if child.name == "the outbox relay":
                self.console.print(f"relay: {child.log_tail(1)}")
        self.children.clear()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def kill(self) -> None:
        """Stop the children without checking anything (on a failure)."""
        for child in reversed(self.children):
            child.stop(timeout_s=10.0)
        self.children.clear()


def _diff(topic: set[tuple[str, int, str]], stored: set[tuple[str, int, str]]) -> str:
    missing, extra = stored - topic, topic - stored
    if not missing and not extra:
        return ""
    return f"; missing from the topic: {len(missing)} (e.g. {sorted(missing)[:2]}), not in the event store: {len(extra)} (e.g. {sorted(extra)[:2]})"
