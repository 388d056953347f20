"""Crash test of the command side (issue 13, point 5): commands keep arriving over HTTP while the outbox relay
and the order service are killed with SIGKILL, and afterwards the log must be exactly what the event store says.

One run (:func:`run_crash`):

1. Start `rewind orders serve` (a free loopback port) and `rewind outbox relay` on one database and a topic of
   the run's own.
2. A :class:`Driver` walks ``--orders`` orders through their lifecycle over HTTP from several threads (place,
   payment or its failure, reservation, maybe release and cancel, shipment, delivery, sometimes a refund),
   with some deliberately illegal commands mixed in (:func:`plan_orders`). A command whose outcome it does not
   know (the connection failed, the answer was a 503) is sent again with the same commandId until it gets a
   final answer: the service's idempotency must make that safe.
3. Meanwhile the relay is killed at random moments (each time once it holds its shards, after a random pause)
   and restarted, and the service is killed while commands are in flight and restarted.
4. Once every command is answered: send a sample of the committed ones again (each must be answered as a replay
   of the same event, writing nothing), wait until the outbox lag is 0, stop both with SIGTERM.

Then :func:`check_log` compares the orders topic with the events table (by eventId, bytes, key, partition, seq
order per order, copies), and :func:`run_view` folds the topic with `rewind run order-status` so that the
caller can compare each order's row with what the event store says. The run's own topics are left on the
broker, named ``<name>.*``.

    .venv/bin/python -m scripts.command_side_crash --orders 3000 --relay-kills 20 --service-kills 6 --database sqlite
    .venv/bin/python -m scripts.command_side_crash --orders 3000 --database postgresql://postgres@127.0.0.1:25432/postgres

With a PostgreSQL URL the run creates a database of its own on that server (``crash_<hex>``) and drops it at
the end. Uses the local broker, or KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import typer
from sqlalchemy import Engine, create_engine, make_url, select
from sqlalchemy.pool import NullPool

from pipelines.live.supervisor import PipelineChild, group_lag
from pipelines.orders.database import open_database
from pipelines.orders.event_store import EventStore
from pipelines.orders.relay_outbox import outbox_lag
from pipelines.orders.tables import events, outbox
from pipelines.partitioning import partition_for
from pipelines.readback import latest_by_key, read_to_end
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from schemas.codec import EventCodec
from scripts.local_service.ports import port_free
from scripts.postgres_local.databases import fresh_database

__all__ = [
    "Step", "OrderPlan", "plan_orders", "Driver", "DriverCounts", "ServiceProcess", "RelayProcess", "CrashConfig", "CrashRun",
    "run_crash", "driver_faults", "StoredEvent", "EventStoreContents", "read_event_store", "LogCheck", "check_log", "ViewRun", "run_view",
    "free_port", "counts_table", "main",
]

ROOT = Path(__file__).resolve().parents[1]
#: Longest a command is retried while its outcome is unknown (the service is down or the database does not answer).
RETRY_FOR_S = 90.0
#: How long one HTTP request may take before its outcome counts as unknown (the SQLite busy timeout is 5 s).
REQUEST_TIMEOUT_S = 15.0


# --- the commands ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One command of an order's plan: POST ``body`` to ``path``.

    ``refusal`` is None for a legal command (it must commit: 2xx) and the HTTP status an illegal one must be
    refused with (404, 409, 422); ``name`` says what the command is (``pay``, ``illegal:ship-while-PLACED``).
    """

    name: str
    path: str
    body: dict[str, Any]
    refusal: int | None = None

    @property
    def command_id(self) -> str:
        return str(self.body["commandId"])


@dataclass(frozen=True)
class OrderPlan:
    """An order's commands, sent one after the other (each only once the previous one has its final answer)."""

    order_id: str
    steps: tuple[Step, ...]


def plan_orders(orders: int, *, seed: int, illegal_rate: float = 0.15, prefix: str = "ord") -> list[OrderPlan]:
    """``orders`` lifecycles drawn with ``seed``, about ``illegal_rate`` of them with one illegal command inserted.

    An illegal command is refused whatever happened before it, because every earlier command of the order gets
    its final answer first: e.g. a payment of an order not placed yet (404), shipping an order whose inventory is
    not reserved (409), a refund larger than the total (422), a commandId reused for another command (422).
    """
    rng = random.Random(seed)
    return [_plan_one(f"{prefix}-{n:06d}", rng, illegal_rate) for n in range(orders)]


def _plan_one(order_id: str, rng: random.Random, illegal_rate: float) -> OrderPlan:
    counter = iter(range(1_000))

    def cid() -> str:
        return f"{order_id}-c{next(counter)}"

    base = f"/orders/{order_id}"
    lines = [(f"SKU-{rng.randrange(50):03d}", rng.randint(1, 4), rng.randint(100, 9_999)) for _ in range(rng.randint(1, 3))]
    items = [{"sku": sku, "quantity": quantity, "unitPriceMinor": price} for sku, quantity, price in lines]
    total = sum(quantity * price for _, quantity, price in lines)
    place = {"commandId": cid(), "orderId": order_id, "customerId": f"cust-{rng.randrange(100)}", "items": items,
             "currency": rng.choice(["EUR", "USD", "GBP"]), "salesChannel": rng.choice(["web", "app", "store"])}
    # The legal walk, as (step name, status after it).
    legal: list[tuple[Step, str]] = [(Step("place", "/orders", place), "PLACED")]

    def add(name: str, path: str, status: str, **body: Any) -> None:
        legal.append((Step(name, f"{base}/{path}", {"commandId": cid(), **body}), status))

    if rng.random() < 0.12:
        add("fail-payment", "payment-failure", "PAYMENT_FAILED", reason="card declined")
        if rng.random() < 0.8:
            add("cancel", "cancellation", "CANCELLED", reason="payment failed")
    else:
        add("pay", "payment", "PAYMENT_AUTHORIZED")
        if rng.random() < 0.08:
            add("cancel", "cancellation", "CANCELLED", reason="customer changed their mind")
        else:
            add("reserve", "reservation", "INVENTORY_RESERVED", warehouseId=f"wh-{rng.randrange(4)}")
            if rng.random() < 0.12:
                add("release", "release", "INVENTORY_RELEASED", reason="out of stock")
                if rng.random() < 0.7:
                    add("cancel", "cancellation", "CANCELLED", reason="out of stock")
            else:
                add("ship", "shipment", "SHIPPED", carrier="dhl", trackingNumber=f"trk-{order_id}")
                if rng.random() < 0.92:
                    add("deliver", "delivery", "DELIVERED")
                    if rng.random() < 0.25:
                        sku, _, price = lines[0]
                        add("refund", "refund", "REFUNDED", items=[{"sku": sku, "quantity": 1}], amountMinor=price, reason="damaged")
    steps = [step for step, _ in legal]
    if rng.random() < illegal_rate:
        position = rng.randrange(len(legal) + 1)  # before the step at ``position``; 0: before the order exists
        status = legal[position - 1][1] if position else None
        choices = _illegal_choices(order_id, status, place=place, total=total, cid=cid, first_sku=lines[0][0])
        steps.insert(position, rng.choice(choices))
    return OrderPlan(order_id, tuple(steps))


def _illegal_choices(order_id: str, status: str | None, *, place: dict[str, Any], total: int, cid: Callable[[], str],
                     first_sku: str) -> list[Step]:
    """Commands that must be refused when the order is in ``status`` (None: not placed yet), with their status code."""
    base = f"/orders/{order_id}"

    def bad(what: str, path: str, refusal: int, **body: Any) -> Step:
        return Step(f"illegal:{what}", f"{base}/{path}", {"commandId": cid(), **body}, refusal)

    # Refused in any status: a malformed PlaceOrder (unknown currency, negative quantity) of another order id.
    other = f"{order_id}-x"
    choices = [
        Step("illegal:unknown-currency", "/orders", {**place, "commandId": cid(), "orderId": other, "currency": "EUT"}, 422),
        Step("illegal:negative-quantity", "/orders",
             {**place, "commandId": cid(), "orderId": other, "items": [{"sku": first_sku, "quantity": -1, "unitPriceMinor": 100}]}, 422),
    ]
    if status is None:
        return [*choices, bad("pay-unknown-order", "payment", 404)]
    choices += [
        Step("illegal:place-again", "/orders", {**place, "commandId": cid()}, 409),
        # The PlaceOrder's commandId again, for another command: refused, its stored answer untouched.
        Step("illegal:command-id-reused", f"{base}/delivery", {"commandId": place["commandId"]}, 422),
    ]
    by_status: dict[str, list[Step]] = {
        "PLACED": [bad("ship-while-PLACED", "shipment", 409, carrier="dhl", trackingNumber="t"),
                   bad("reserve-while-PLACED", "reservation", 409, warehouseId="wh-0")],
        "PAYMENT_AUTHORIZED": [bad("pay-twice", "payment", 409), bad("deliver-while-PAYMENT_AUTHORIZED", "delivery", 409)],
        "PAYMENT_FAILED": [bad("pay-after-failure", "payment", 409), bad("reserve-while-PAYMENT_FAILED", "reservation", 409, warehouseId="wh-0")],
        "INVENTORY_RESERVED": [bad("cancel-while-INVENTORY_RESERVED", "cancellation", 409, reason="r"),
                               bad("deliver-while-INVENTORY_RESERVED", "delivery", 409)],
        "INVENTORY_RELEASED": [bad("ship-while-INVENTORY_RELEASED", "shipment", 409, carrier="dhl", trackingNumber="t")],
        "SHIPPED": [bad("cancel-while-SHIPPED", "cancellation", 409, reason="r"), bad("release-while-SHIPPED", "release", 409, reason="r")],
        "DELIVERED": [bad("refund-above-total", "refund", 422, items=[], amountMinor=total + 1, reason="r"),
                      bad("ship-while-DELIVERED", "shipment", 409, carrier="dhl", trackingNumber="t")],
        "REFUNDED": [bad("deliver-while-REFUNDED", "delivery", 409)],
        "CANCELLED": [bad("pay-while-CANCELLED", "payment", 409)],
    }
    return choices + by_status[status]


# --- the driver -----------------------------------------------------------------------------------------------

@dataclass
class DriverCounts:
    """What the driver did. ``sent`` counts commands (distinct commandIds); each ends ``committed`` (2xx; of them
    ``replayed`` answered as a retry of a command that had committed before its answer was lost), ``rejected``
    (4xx), or ``gave_up``. ``attempts`` counts HTTP requests; ``failed`` the requests that got no answer because
    of a connection error (the service down), of which ``unknown_outcome`` had been sent when the connection
    broke; ``unavailable`` the 503s. ``illegal_sent`` counts the illegal commands, ``unexpected`` lists every
    answer that was not the planned one (a legal command refused, an illegal one accepted or refused otherwise).
    ``resent``/``resent_replayed``: committed commands sent again at the end (:meth:`Driver.resend_committed`)."""

    sent: int = 0
    committed: int = 0
    replayed: int = 0
    rejected: int = 0
    illegal_sent: int = 0
    attempts: int = 0
    failed: int = 0
    unknown_outcome: int = 0
    unavailable: int = 0
    gave_up: int = 0
    resent: int = 0
    resent_replayed: int = 0
    rejected_by_status: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


class Driver:
    """Sends every plan's commands to the service at ``base_url`` from ``workers`` threads, at most ``rate_per_s``
    commands per second overall (each order's commands one after the other, several orders at a time).

    ``slow_down()`` True makes it send at a quarter of the rate once 80 % of the commands are sent, and at most one
    a second once 95 % are: the kills are due to happen while commands keep arriving, so the driver waits for them
    at a trickle instead of ending.
    ``committed`` maps the commandId of every committed command to its answer's eventId.
    """

    def __init__(self, plans: list[OrderPlan], base_url: str, *, workers: int = 8, rate_per_s: float = 60.0,
                 slow_down: Callable[[], bool] = lambda: False) -> None:
        self.plans, self.base_url, self.workers, self.rate_per_s, self.slow_down = plans, base_url, workers, rate_per_s, slow_down
        self.total = sum(len(p.steps) for p in plans)
        self.counts = DriverCounts()
        self.committed: dict[str, str] = {}
        self._committed_steps: dict[str, Step] = {}
        self.in_flight = 0
        self.answers = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._next_slot = time.monotonic()
        self._queue = iter(plans)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"crash-driver-{i}", daemon=True) for i in range(workers)]

    def start(self) -> Driver:
        for t in self._threads:
            t.start()
        return self

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        """Stop sending (the commands in flight finish their current attempt)."""
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.running():
            raise TimeoutError(f"the driver did not finish within {timeout_s:g} s ({self.counts.sent} of {self.total} commands sent)")
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as client:
                while not self._stop.is_set():
                    with self._lock:
                        plan = next(self._queue, None)
                    if plan is None:
                        return
                    self._walk(client, plan)
        except BaseException as exc:  # re-raised by join(), in the caller's thread
            self.error = exc
            self._stop.set()

    def _walk(self, client: httpx.Client, plan: OrderPlan) -> None:
        for step in plan.steps:
            if self._stop.is_set():
                return
            if not self._send(client, step):
                return  # an unexpected answer: the rest of this order's plan no longer fits its state

    def _pace(self) -> None:
        with self._lock:
            interval = 1.0 / self.rate_per_s
            if self.counts.sent >= 0.8 * self.total and self.slow_down():
                interval = 4 * interval if self.counts.sent < 0.95 * self.total else max(4 * interval, 1.0)
            slot = max(time.monotonic(), self._next_slot + interval)
            self._next_slot = slot
        self._stop.wait(max(0.0, slot - time.monotonic()))

    def _send(self, client: httpx.Client, step: Step) -> bool:
        """Send ``step`` until it has a final answer; False when that answer is not the planned one."""
        self._pace()
        with self._lock:
            self.counts.sent += 1
            self.counts.illegal_sent += step.refusal is not None
        response, unknown = self._post(client, step)
        if response is None:
            return False
        return self._final(step, response, after_unknown=unknown)

    def _post(self, client: httpx.Client, step: Step) -> tuple[httpx.Response | None, bool]:
        """POST ``step`` again and again (same commandId, same body) until an answer other than 503; that answer (None:
        none within RETRY_FOR_S, counted as ``gave_up``) and whether an earlier attempt's outcome was unknown (the
        connection broke after sending, or a 503, which a commit whose acknowledgement was lost also gives)."""
        deadline = time.monotonic() + RETRY_FOR_S
        backoff_s = 0.05
        unknown = False
        while True:
            with self._lock:
                self.counts.attempts += 1
                self.in_flight += 1
            response: httpx.Response | None = None
            try:
                response = client.post(step.path, json=step.body)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self._count("failed")  # not sent: nothing listens (the service is down or starting)
            except httpx.TransportError:
                self._count("failed", "unknown_outcome")  # sent, and the connection broke before the answer
                unknown = True
            finally:
                with self._lock:
                    self.in_flight -= 1
            if response is not None:
                with self._lock:
                    self.answers += 1
                if response.status_code != 503:
                    return response, unknown
                self._count("unavailable")
                unknown = True
            if time.monotonic() > deadline or self._stop.is_set():
                self._count("gave_up")
                with self._lock:
                    self.counts.unexpected.append(f"{step.command_id} {step.name}: no final answer within {RETRY_FOR_S:g} s")
                return None, unknown
            self._stop.wait(backoff_s)
            backoff_s = min(backoff_s * 2, 0.5)

    def resend_committed(self, *, sample: int, seed: int) -> None:
        """Once every plan is done: send ``sample`` committed commands again (same commandId, same body), one at a time.

        Each must be answered as a replay (header ``Idempotent-Replayed``) naming the event of its first answer: the
        stored answers outlived the kills, and a retry writes nothing (the caller's check of the events table against
        :attr:`committed` shows that). Counted in ``resent`` and ``resent_replayed``; any other answer is ``unexpected``.
        """
        chosen = random.Random(seed).sample(sorted(self._committed_steps), min(sample, len(self._committed_steps)))
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            for command_id in chosen:
                step = self._committed_steps[command_id]
                response, _ = self._post(client, step)
                if response is None:
                    continue
                self.counts.resent += 1
                same = response.status_code < 300 and response.json().get("eventId") == self.committed[command_id]
                if same and response.headers.get("Idempotent-Replayed") == "true":
                    self.counts.resent_replayed += 1
                else:
                    self.counts.unexpected.append(f"{command_id} {step.name} sent again: {response.status_code} {response.text[:300]}")

    def _final(self, step: Step, response: httpx.Response, *, after_unknown: bool) -> bool:
        code = response.status_code
        with self._lock:
            if 200 <= code < 300:
                self.counts.committed += 1
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                self.counts.replayed += replayed
                body = response.json()
                self.committed[step.command_id] = str(body["eventId"])
                self._committed_steps[step.command_id] = step
                if replayed and not after_unknown:
                    self.counts.unexpected.append(f"{step.command_id} {step.name}: replayed answer to a first attempt")
                if step.refusal is None:
                    return True
                self.counts.unexpected.append(f"{step.command_id} {step.name}: accepted ({code}), must be refused with {step.refusal}")
                return False
            if 400 <= code < 500:
                self.counts.rejected += 1
                self.counts.rejected_by_status[code] += 1
                if step.refusal == code:
                    return True
            self.counts.unexpected.append(f"{step.command_id} {step.name}: {code} {response.text[:300]}"
                                          + (f" (planned: {step.refusal})" if step.refusal else " (planned: commit)"))
            return False

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                setattr(self.counts, name, getattr(self.counts, name) + 1)


# --- the processes --------------------------------------------------------------------------------------------

def free_port() -> int:
    """A loopback port nothing listens on now, from 20000-32767 (below Linux's ephemeral range)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        if port_free(port):
            return port
    raise RuntimeError("no free loopback port found in 20000-32767")


@dataclass
class _Child:
    """A `rewind ...` child process, its output appended to ``log_path``."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @staticmethod
    def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            return subprocess.Popen([sys.executable, "-m", "scripts.cli", *args], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                    stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL: no chance to finish a command, mark a batch or release a lease."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=30)

    def terminate(self, *, within_s: float = 15.0) -> int:
        """SIGTERM and wait (SIGKILL after ``within_s``); the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=within_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=30)


@dataclass
class ServiceProcess(_Child):
    """`rewind orders serve` on ``port``."""

    port: int = 0

    @classmethod
    def start(cls, *, database_url: str, port: int, log_path: Path) -> ServiceProcess:
        proc = cls._spawn(["orders", "serve", "--port", str(port), "--log-level", "warning"], {"REWIND_DATABASE_URL": database_url}, log_path)
        return cls(proc, log_path, port)

    def healthy(self) -> bool:
        """True when it answers /healthz with 200."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


@dataclass
class RelayProcess(_Child):
    """`rewind outbox relay` publishing to ``topic``."""

    @classmethod
    def start(cls, *, database_url: str, bootstrap: str, topic: str, partitions: int, relay_id: str, log_path: Path,
              batch_size: int = 50, lease_ttl_s: float = 2.0) -> RelayProcess:
        env = {"REWIND_DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REWIND_ORDERS_TOPIC": topic,
               "REWIND_ORDERS_PARTITIONS": str(partitions)}
        args = ["outbox", "relay", "--relay-id", relay_id, "--batch-size", str(batch_size), "--lease-ttl-s", str(lease_ttl_s),
                "--progress-interval-s", "1"]
        return cls(cls._spawn(args, env, log_path), log_path)

    def holds_shards(self) -> bool:
        """True once it has claimed shards (and so is about to publish, or publishing)."""
        return re.search(r"holds \d+ of the shards", self.log()) is not None


def _wait(condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.1, log_of: _Child | None = None) -> None:
    """Poll ``condition`` until true; TimeoutError after ``timeout_s`` (with the end of ``log_of``'s log)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = "\n" + "\n".join(log_of.log().splitlines()[-30:]) if log_of is not None else ""
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}{tail}")
        time.sleep(interval_s)


# --- one run --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CrashConfig:
    """One run: ``orders`` orders at ``rate_per_s`` commands/s from ``workers`` threads, the relay killed
    ``relay_kills`` times (a random pause of ``relay_pause_s`` after it holds its shards), the service
    ``service_kills`` times while commands are in flight; at the end ``resend`` committed commands sent again."""

    database_url: str
    bootstrap: str
    topic: str
    log_dir: Path
    orders: int = 300
    relay_kills: int = 5
    service_kills: int = 2
    partitions: int = 6
    workers: int = 8
    rate_per_s: float = 60.0
    relay_pause_s: tuple[float, float] = (0.3, 1.5)
    resend: int = 50
    seed: int = 13


@dataclass
class CrashRun:
    """What happened: the driver (its counts and committed commands), the kills, and timings."""

    driver: Driver
    relay_kills: int = 0
    relay_kills_while_sending: int = 0
    service_kills: int = 0
    service_kills_while_sending: int = 0
    in_flight_at_service_kills: list[int] = field(default_factory=list)
    traffic_s: float = 0.0
    drain_s: float = 0.0
    relay_exit_code: int | None = None
    service_exit_code: int | None = None


def run_crash(cfg: CrashConfig) -> CrashRun:
    """Steps 1-4 of the module docstring; every child is stopped on the way out, also on failure."""
    return _Crash(cfg).run()


class _Crash:
    """One :func:`run_crash`: the children, the driver and the two killer threads."""

    def __init__(self, cfg: CrashConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.port = free_port()
        self.children: list[_Child] = []
        self.stop = threading.Event()
        self.kills_done = threading.Event()
        self.errors: list[BaseException] = []
        self.relays: list[RelayProcess] = []
        self.driver = Driver(plan_orders(cfg.orders, seed=cfg.seed), f"http://127.0.0.1:{self.port}", workers=cfg.workers,
                             rate_per_s=cfg.rate_per_s, slow_down=lambda: not self.kills_done.is_set())
        self.result = CrashRun(self.driver)

    def run(self) -> CrashRun:
        cfg, driver, result = self.cfg, self.driver, self.result
        try:
            # Step 1
            self.service = self._start_service(0)
            _wait(self.service.healthy, timeout_s=60, what=f"the order service on port {self.port}", log_of=self.service)
            self.relays.append(self._start_relay(0))
            # Steps 2 and 3
            started = time.monotonic()
            driver.start()
            killers = [threading.Thread(target=self._guarded(k), name=f"crash-{k.__name__}", daemon=True)
                       for k in (self._kill_relays, self._kill_service)]
            for k in killers:
                k.start()
            for k in killers:
                k.join(300)
            self.kills_done.set()
            if self.errors:
                driver.stop()
                raise self.errors[0]
            driver.join(300)
            result.traffic_s = time.monotonic() - started
            # Step 4
            driver.resend_committed(sample=cfg.resend, seed=cfg.seed)
            drain_from = time.monotonic()
            engine = _reader(cfg.database_url)
            try:
                _wait(lambda: outbox_lag(engine).rows == 0, timeout_s=120, what="the outbox lag to reach 0", interval_s=0.2)
            finally:
                engine.dispose()
            result.drain_s = time.monotonic() - drain_from
            result.relay_exit_code = self.relays[-1].terminate()
            result.service_exit_code = self.service.terminate()
            return result
        finally:
            self.stop.set()
            self.driver.stop()
            for child in self.children:
                with contextlib.suppress(Exception):
                    child.kill9()

    def _start_service(self, n: int) -> ServiceProcess:
        service = ServiceProcess.start(database_url=self.cfg.database_url, port=self.port, log_path=self.cfg.log_dir / f"service-{n}.log")
        self.children.append(service)
        return service

    def _start_relay(self, n: int) -> RelayProcess:
        cfg = self.cfg
        relay_id = "crash-relay" if n % 2 == 0 else f"crash-relay-{n}"  # the same id takes its leases back at once, a new one waits
        relay = RelayProcess.start(database_url=cfg.database_url, bootstrap=cfg.bootstrap, topic=cfg.topic, partitions=cfg.partitions,
                                   relay_id=relay_id, log_path=cfg.log_dir / f"relay-{n}.log")
        self.children.append(relay)
        return relay

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run_it() -> None:
            try:
                target()
            except BaseException as exc:  # re-raised by run(), in the caller's thread
                self.errors.append(exc)
                self.stop.set()
        return run_it

    def _done(self) -> bool:
        """Stop killing: the run is being stopped, or no command arrives any more."""
        return self.stop.is_set() or not self.driver.running()

    def _holds_shards(self, relay: RelayProcess) -> bool:
        return relay.holds_shards() or self._done()

    def _kill_relays(self) -> None:
        """Kill the relay at a random moment once it holds its shards (so mostly mid-batch), restart it; ``relay_kills`` times."""
        for n in range(1, self.cfg.relay_kills + 1):
            relay = self.relays[-1]
            _wait(functools.partial(self._holds_shards, relay), timeout_s=60, what=f"relay {n - 1} to hold its shards", log_of=relay)
            if self.stop.wait(self.rng.uniform(*self.cfg.relay_pause_s)) or self._done():
                return
            relay.kill9()
            self.result.relay_kills += 1
            self.result.relay_kills_while_sending += self.driver.running()
            self.relays.append(self._start_relay(n))

    def _kill_service(self) -> None:
        """Kill the service ``service_kills`` times, spread over the run, each at a moment when it has answered since
        its (re)start and a command is in flight; restart it on the same port at once."""
        driver, kills = self.driver, self.cfg.service_kills
        for n in range(1, kills + 1):
            target = driver.total * (0.1 + 0.7 * (n - 0.5 + self.rng.uniform(-0.3, 0.3)) / kills)
            answers = driver.answers

            def due(target: float = target, answers: int = answers) -> bool:
                return (driver.counts.sent >= target and driver.answers > answers and driver.in_flight > 0) or self._done()

            _wait(due, timeout_s=120, what=f"service kill {n}: a command in flight", interval_s=0.002)
            if self._done():
                return
            in_flight = driver.in_flight
            self.service.kill9()
            self.result.service_kills += 1
            self.result.service_kills_while_sending += driver.running()
            self.result.in_flight_at_service_kills.append(in_flight)
            self.service = self._start_service(n)


def _reader(database_url: str) -> Engine:
    """An engine for reading while the service and the relay write: on SQLite a plain one (no BEGIN IMMEDIATE, so
    reads never take the write lock)."""
    if make_url(database_url).get_backend_name() == "sqlite":
        return create_engine(database_url, poolclass=NullPool)
    return open_database(database_url, pool_size=1)


# --- the checks -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredEvent:
    """One row of the events table."""

    order_id: str
    seq: int
    event_id: str
    event_type: str
    command_id: str
    payload: bytes


@dataclass(frozen=True)
class EventStoreContents:
    """The events table (by order and seq) and, as examples, the faults of the outbox beside it: an event without
    exactly one outbox row, an outbox row without its event, a row not marked published."""

    events: list[StoredEvent]
    outbox_faults: list[str]


def read_event_store(database_url: str) -> EventStoreContents:
    """Every row of the events table, and what is wrong with the outbox (see :class:`EventStoreContents`)."""
    engine = _reader(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(events.c.order_id, events.c.seq, events.c.event_id, events.c.event_type, events.c.command_id,
                                       events.c.payload).order_by(events.c.order_id, events.c.seq)).all()
            boxed = conn.execute(select(outbox.c.order_id, outbox.c.seq, outbox.c.published_at)).all()
    finally:
        engine.dispose()
    stored = [StoredEvent(r.order_id, r.seq, r.event_id, r.event_type, r.command_id, bytes(r.payload)) for r in rows]
    in_outbox = Counter((r.order_id, r.seq) for r in boxed)
    in_events = Counter((e.order_id, e.seq) for e in stored)
    faults = [f"{k[0]} seq {k[1]}: {in_events[k]} events, {in_outbox[k]} outbox rows" for k in sorted(set(in_outbox) | set(in_events))
              if in_outbox[k] != 1 or in_events[k] != 1]
    faults += [f"{r.order_id} seq {r.seq}: outbox row not marked published" for r in boxed if r.published_at is None]
    return EventStoreContents(stored, faults[:20])


@dataclass(frozen=True)
class LogCheck:
    """The orders topic against the events table. Every list holds examples of a fault (empty when right):
    ``missing`` committed events not in the topic, ``phantoms`` records whose eventId the store does not hold,
    ``altered`` records whose bytes, key or partition differ from the stored event, ``out_of_order`` orders whose
    first copies are not seq 1, 2, 3... in partition order. ``published_twice`` counts the extra copies,
    ``events_twice`` the events that have them."""

    events: int
    records: int
    distinct: int
    published_twice: int
    events_twice: int
    missing: list[str]
    phantoms: list[str]
    altered: list[str]
    out_of_order: list[str]

    def faults(self) -> list[str]:
        return self.missing + self.phantoms + self.altered + self.out_of_order


def check_log(stored: list[StoredEvent], *, bootstrap: str, topic: str, partitions: int) -> LogCheck:
    """Compare the orders topic with ``stored`` (see :class:`LogCheck`); each record is decoded for its eventId."""
    codec = EventCodec()
    by_id = {e.event_id: e for e in stored}
    messages = sorted(read_to_end(bootstrap, topic, timeout_s=120), key=lambda m: (m.partition(), m.offset()))
    copies: Counter[str] = Counter()
    last_seq: dict[str, int] = {}
    phantoms, altered, out_of_order = [], [], []
    for m in messages:
        envelope = codec.decode(m.value())["envelope"]
        event_id, order_id, seq = envelope["eventId"], envelope["orderId"], envelope["seq"]
        where = f"{m.partition()}/{m.offset()} {order_id} seq {seq} {event_id}"
        copies[event_id] += 1
        event = by_id.get(event_id)
        if event is None:
            phantoms.append(where)
            continue
        if m.value() != event.payload or m.key() != order_id.encode() or (event.order_id, event.seq) != (order_id, seq) \
                or m.partition() != partition_for(m.key(), partitions):
            altered.append(where)
        if copies[event_id] == 1:  # the first copy: seq order per order, after dropping repeats
            if seq != last_seq.get(order_id, 0) + 1:
                out_of_order.append(f"{where} after seq {last_seq.get(order_id, 0)}")
            last_seq[order_id] = seq
    missing = [f"{e.order_id} seq {e.seq} {e.event_id}" for e in stored if e.event_id not in copies]
    return LogCheck(
        events=len(stored), records=len(messages), distinct=len(copies), published_twice=sum(n - 1 for n in copies.values()),
        events_twice=sum(1 for n in copies.values() if n > 1), missing=missing[:20], phantoms=phantoms[:20], altered=altered[:20],
        out_of_order=out_of_order[:20],
    )


def driver_faults(driver: Driver, stored: list[StoredEvent]) -> list[str]:
    """Where the driver's answers and the events table disagree (examples; empty when they agree): every committed
    command has exactly one event, the one its answer named, and no event comes from a command never answered 2xx."""
    by_command: dict[str, list[StoredEvent]] = {}
    for e in stored:
        by_command.setdefault(e.command_id, []).append(e)
    faults = [f"command {c}: answered with event {event_id}, stored {[e.event_id for e in by_command.get(c, [])]}"
              for c, event_id in sorted(driver.committed.items()) if [e.event_id for e in by_command.get(c, [])] != [event_id]]
    faults += [f"command {c}: {len(es)} events stored, never answered 2xx" for c, es in sorted(by_command.items()) if c not in driver.committed]
    return faults[:20]


@dataclass(frozen=True)
class ViewRun:
    """order-status folded over the orders topic: the rows of its view topic (key -> row), the pipeline's
    counters (events_in, applied, duplicates, dead_lettered, ...), its dead letters, and how long it took."""

    rows: dict[str, dict[str, Any]]
    stats: dict[str, int]
    dead_letters: int
    seconds: float


def run_view(*, bootstrap: str, orders_topic: str, name: str, state_dir: Path, log_path: Path, engine: Literal["quix", "batch"] = "batch",
             timeout_s: float = 120.0) -> ViewRun:
    """Run `rewind run order-status` (``engine``) over ``orders_topic`` from offset 0 until its group has committed
    every record, stop it with SIGTERM, and read its view topic (``<name>.view.order-status``) and DLQ."""
    settings = RewindSettings(kafka_bootstrap_servers=bootstrap, orders_topic=orders_topic, dlq_topic=f"{name}.orders.dlq",
                              view_topic_prefix=f"{name}.", state_dir=state_dir, commit_interval_s=0.5, engine=engine)
    group = f"{name}-order-status"
    started = time.monotonic()
    child = PipelineChild.start(settings, "order-status", group=group, state_dir=state_dir, log_path=log_path)
    try:
        _wait(lambda: group_lag(bootstrap, group, orders_topic) == 0, timeout_s=timeout_s, what="order-status to commit every record",
              interval_s=0.5)
        stats = child.stop()
        if child.proc.returncode != 0 or stats is None:
            raise AssertionError(f"order-status exited {child.proc.returncode}:\n{child.log_tail(40)}")
    finally:
        if child.alive():
            child.proc.kill()
            child.proc.wait(timeout=30)
    rows = {key: value["row"] for key, value in latest_by_key(bootstrap, view_topic("order-status", prefix=settings.view_topic_prefix)).items()}
    return ViewRun(rows=rows, stats=stats, dead_letters=len(read_to_end(bootstrap, settings.dlq_topic)), seconds=time.monotonic() - started)


def counts_table(run: CrashRun, log: LogCheck, view: ViewRun | None = None) -> str:
    """The run's figures, one per line."""
    c = run.driver.counts
    lines = [
        ("commands sent", c.sent, f"{c.illegal_sent} of them illegal; {c.attempts} HTTP requests"),
        ("  committed (2xx)", c.committed, f"{c.replayed} answered as replays of a command whose first answer was lost"),
        ("  rejected (4xx)", c.rejected, " ".join(f"{code}: {n}" for code, n in sorted(c.rejected_by_status.items()))),
        ("  gave up", c.gave_up, ""),
        ("failed requests", c.failed, f"connection errors while the service was down; {c.unknown_outcome} of them sent, outcome unknown"),
        ("503 answers", c.unavailable, "retried"),
        ("committed, sent again", c.resent, f"at the end, same commandId and body: {c.resent_replayed} answered as replays of the same event"),
        ("events committed", log.events, "rows of the events table"),
        ("records in the topic", log.records, ""),
        ("published (distinct)", log.distinct, ""),
        ("published twice", log.published_twice, f"extra copies, of {log.events_twice} events"),
        ("relay kills (kill -9)", run.relay_kills, f"{run.relay_kills_while_sending} while commands were arriving"),
        ("service kills (kill -9)", run.service_kills, f"commands in flight at each: {run.in_flight_at_service_kills}"),
    ]
    if view is not None:
        s = view.stats
        lines.append(("order-status rows", len(view.rows), f"in {s.get('events_in')}, applied {s.get('applied')}, "
                                                           f"duplicates {s.get('duplicates')}, dead letters {view.dead_letters}"))
    width = max(len(name) for name, _, _ in lines)
    return "\n".join(f"{name:<{width}}  {value:>7}  {note}".rstrip() for name, value, note in lines)


# --- the script -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _database(database: str, tmp: Path) -> Iterator[str]:
    """``sqlite``: a file in ``tmp``; a PostgreSQL URL: a database of the run's own on that server, dropped at the end."""
    if database == "sqlite":
        yield f"sqlite:///{tmp / 'orders.sqlite'}"
        return
    with fresh_database(database, prefix="crash_") as url:
        yield url


def main(
    orders: int = typer.Option(2000, min=1, help="Orders walked through their lifecycle (about 6 commands each)."),
    relay_kills: int = typer.Option(15, min=0, help="Times the relay is killed with SIGKILL and restarted."),
    service_kills: int = typer.Option(5, min=0, help="Times the order service is killed with SIGKILL mid-command and restarted."),
    database: str = typer.Option("sqlite", help="sqlite (a file of the run's own), or a PostgreSQL server's URL (a database of the run's own is made there)."),
    rate: float = typer.Option(120.0, min=1.0, help="Commands per second sent (overall, from --workers threads)."),
    workers: int = typer.Option(8, min=1, max=64, help="Threads sending commands."),
    seed: int = typer.Option(13, help="Seed of the orders' lifecycles and the kills' moments."),
    kafka_bootstrap_servers: str = typer.Option(None, envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka cluster (default: the local broker)."),
) -> None:
    """Crash the command side while commands arrive; check the log and the order-status view against the event store; print the counts."""
    bootstrap = RewindSettings(kafka_bootstrap_servers=kafka_bootstrap_servers).bootstrap()
    name = f"crash-{uuid.uuid4().hex[:8]}"
    typer.echo(f"topics {name}.*, broker {bootstrap}, {os.getloadavg()[0]:.1f} load average, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="rewind-crash-") as tmp_dir, _database(database, Path(tmp_dir)) as url:
        tmp = Path(tmp_dir)
        cfg = CrashConfig(database_url=url, bootstrap=bootstrap, topic=f"{name}.orders", log_dir=tmp / "logs", orders=orders,
                          relay_kills=relay_kills, service_kills=service_kills, workers=workers, rate_per_s=rate, seed=seed)
        typer.echo(f"database {make_url(url).render_as_string(hide_password=True)}")
        started = time.monotonic()
        run = run_crash(cfg)
        contents = read_event_store(url)
        stored = contents.events
        log = check_log(stored, bootstrap=bootstrap, topic=cfg.topic, partitions=cfg.partitions)
        view = run_view(bootstrap=bootstrap, orders_topic=cfg.topic, name=name, state_dir=tmp / "state", log_path=tmp / "logs" / "view.log")
        # What the event store says of each order: its events folded by the service's own aggregate.
        store = EventStore(open_database(url, pool_size=1))
        try:
            expected = {order_id: store.load(order_id).row for order_id in {e.order_id for e in stored}}
        finally:
            store.engine.dispose()
        differ = sorted(k for k in set(expected) | set(view.rows)
                        if (expected.get(k) or {}).get("status") != view.rows.get(k, {}).get("status")
                        or (expected.get(k) or {}).get("lastSeq") != view.rows.get(k, {}).get("lastSeq"))
        typer.echo(counts_table(run, log, view))
        typer.echo(f"traffic {run.traffic_s:.1f} s, drain {run.drain_s:.1f} s, view {view.seconds:.1f} s, total {time.monotonic() - started:.1f} s; "
                   f"load average now {os.getloadavg()[0]:.1f}")
        problems = [
            *(f"unexpected answer: {u}" for u in run.driver.counts.unexpected[:20]),
            *(f"outbox: {f}" for f in contents.outbox_faults),
            *(f"log: {f}" for f in log.faults()),
            *(f"view differs from the event store: {k}" for k in differ[:20]),
        ]
        problems += [f"driver vs events table: {f}" for f in driver_faults(run.driver, stored)]
        if log.distinct != log.events or run.driver.counts.rejected != run.driver.counts.illegal_sent:
            problems.append("published distinct != events committed, or rejected != illegal commands sent")
        if view.dead_letters or view.stats.get("duplicates") != log.published_twice:
            problems.append(f"order-status: {view.dead_letters} dead letters, {view.stats.get('duplicates')} duplicates skipped")
        if run.relay_exit_code != 0 or run.service_exit_code != 0:
            problems.append(f"exit codes after SIGTERM: relay {run.relay_exit_code}, service {run.service_exit_code}")
        typer.echo("\n".join(problems) if problems else "all checks hold: every committed event published, nothing else, in seq order per order; "
                   "the view equals the event store")
        if problems:
            raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
