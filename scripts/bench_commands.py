"""Speed of the command side (issue 13, point 7): one order service, one outbox relay, and command-to-replica latency.

    .venv/bin/python -m scripts.bench_commands --orders 20000 --database both --workers 8 [--batch 200]

For each database (``--database sqlite``, ``postgresql``, or ``both``: one after the other, printed side by side)
on a fresh event store of the run's own (a SQLite file in a temp dir; a PostgreSQL database ``benchcmd_<hex>`` made
on the server of ``--postgres-url`` and dropped at the end, or without it on a private server started for the run
with `rewind postgres up`'s code, under a temp run dir on a free port, stopped at the end):

1. **The service alone.** One `rewind orders serve` (its defaults) takes the commands of ``--orders`` generated orders
   (:mod:`scripts.workload.commands`, one command per event, about 4.6 an order), posted by the workload's sender
   (:func:`~scripts.workload.sender.send_commands`) from ``--workers`` threads. No relay runs: the outbox only grows.
   With ``--batch N`` each request carries up to N commands (``POST /commands``, one transaction each).
   Figures: commands answered 2xx / seconds from the first send to the last answer; CPU time a command of the
   service's process and of this one (the sender's threads: the load generator shares the machine's cores).
2. **The relay alone.** One `rewind outbox relay` (its defaults) drains that backlog to an orders topic of the run's
   own. Figure: outbox rows / seconds from spawning the relay until the outbox lag is 0. That includes its start
   (Python, the migration check, the topic check, the shard leases), so the time to its first published rows and
   the rate after them are printed too, and the relay's CPU time an event.
3. **Both together.** The commands of another ``--orders`` orders, posted the same way while that relay runs.
   Figures: commands/s as in 1; the outbox lag sampled every ``LAG_SAMPLE_S`` (most unpublished rows, oldest age);
   the time from the last answer until the lag is 0. The relay *kept up* when no unpublished row was ever older than
   ``KEPT_UP_S`` (a relay that falls behind sees that age grow for as long as the commands keep coming); the CPU
   time a command of the service, the relay and the sender.
4. **Latency.** The relay is stopped and started again on a fresh orders topic, followed by `rewind run order-status`
   (the default engine, a checkpoint every ``--commit-interval-s``) and `rewind serve` (the replica) on view topics
   of their own. Then the commands of further orders are sent at ``--rate`` a second for ``--seconds`` (the same
   sender and workers; each request waits for its slot, 1/rate apart).
   Measured for each command answered 2xx, as (order, seq): from the moment its 2xx answer arrived to the moment
   the replica answered ``GET /views/order-status/{orderId}?min_position=...`` with a row whose ``lastSeq`` >= seq.
   That read is sent as soon as a read_committed consumer of the view topic sees a view record of the order with
   ``lastSeq`` >= seq, with ``min_position`` just past that record, so the replica answers once it has applied it
   (read-your-writes, no polling). A command therefore counts as visible no earlier than its view record was seen
   committed: at most one consumer fetch later than the replica really showed it. Printed: p50, p99 and max; the
   p50 and p99 of each stage (2xx -> its event read from the orders topic: the relay; -> a view record covering it
   read committed: the engine and its checkpoint; -> the replica's answer) and of the command's own round trip
   (send -> 2xx). The commands sent in the stream's first ``WARMUP_S`` are left out (and counted).

Every child is stopped with SIGTERM at the end (SIGKILL after 30 s), also on failure; the run's topics (``<name>.*``)
are deleted unless ``--keep-topics``. Broker: KAFKA_BOOTSTRAP_SERVERS (default: the local one). The figures depend on
the machine: its load average is printed at the start and at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import orjson
import typer
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.pool import NullPool

from pipelines.live.supervisor import PipelineChild, group_members_with_partitions
from pipelines.orders.database import open_database
from pipelines.orders.relay_outbox import outbox_lag
from pipelines.settings import RewindSettings
from pipelines.topics import ORDERS_TOPIC_CONFIG, VIEW_TOPIC_CONFIG, admin_client, ensure_topic, view_topic
from schemas.codec import EventCodec
from scripts import postgres_local
from scripts.main_job_service import ChildProcess, CommandSideFailed, free_port
from scripts.postgres_local.databases import fresh_database
from scripts.workload import WorkloadConfig, generate
from scripts.workload.commands import WorkloadCommand, workload_commands
from scripts.workload.sender import SendReport, send_commands

__all__ = [
    "Plan", "plan_commands", "BenchConfig", "DrainFigures", "LagFigures", "CpuFigures", "LatencyFigures", "Figures", "bench_database",
    "figures_table", "main",
]

Database = Literal["sqlite", "postgresql"]
#: How often the outbox lag is sampled while commands arrive with the relay running (step 3).
LAG_SAMPLE_S = 0.2
#: The relay kept up when no row waited longer than this to be published (step 3).
KEPT_UP_S = 2.0
#: How long the replica may wait for a position (ms), and how long after the paced stream the last commands may take.
REPLICA_WAIT_MS = 10_000
TAIL_S = 60.0
#: Step 4 leaves out the commands sent in the stream's first seconds: the first requests on each connection, the
#: engine's first transaction and the replica's first reads are a start, not the steady state measured.
WARMUP_S = 2.0
VIEW = "order-status"


def _say(database: str, text: str) -> None:
    typer.echo(f"{time.strftime('%H:%M:%S')} [{database}] {text}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- the commands ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """The commands of steps 1, 3 and 4, from one generated workload: each order in one step only, its commands in
    emission order (so in seq order). Orders are dealt to the steps at random, so each step gets a mix of orders from
    the whole simulated history (order ids grow with time: the last ones placed have few events yet)."""

    alone: list[WorkloadCommand]
    together: list[WorkloadCommand]
    paced: list[WorkloadCommand]


def plan_commands(*, orders: int, paced: int, seed: int) -> Plan:
    """``orders`` orders' commands for step 1 and for step 3, and ``paced`` commands (of further orders) for step 4."""
    paced_orders = paced // 3 + 10  # about 4.6 commands an order; at least 3 on average even for a small sample
    workload = generate(WorkloadConfig(seed=seed, orders=2 * orders + paced_orders, days=3.0, poison_rate=0.0))
    commands = list(workload_commands(workload.records))
    order_ids = sorted({c.order_id for c in commands})
    random.Random(seed).shuffle(order_ids)
    step_of = {order_id: min(n // orders, 2) for n, order_id in enumerate(order_ids)}
    split: list[list[WorkloadCommand]] = [[], [], []]
    for command in commands:
        split[step_of[command.order_id]].append(command)
    return Plan(split[0], split[1], split[2][:paced])


# --- the processes and the database ---------------------------------------------------------------------------

@contextlib.contextmanager
def _postgres_server(url: str | None, tmp: Path) -> Iterator[str]:
    """The server URL to make the run's databases on: ``url``, or a private server started here and stopped at the end."""
    if url:
        yield url
        return
    run_dir = tmp / "pg"
    tmp.chmod(0o755)  # started by root, the server runs as the postgres OS user: it must get through to its run dir
    paths = postgres_local.LocalPostgresPaths(run_dir=run_dir)
    typer.echo(f"starting a private PostgreSQL server under {run_dir} ...")
    server = postgres_local.up(port=free_port(), paths=paths)
    try:
        yield server
    finally:
        postgres_local.down(paths=paths)


@contextlib.contextmanager
def _event_store(database: Database, *, server: Callable[[], str], tmp: Path) -> Iterator[str]:
    """A fresh event store's URL: a SQLite file in ``tmp``, or a database of its own on ``server()``, dropped at the end."""
    if database == "sqlite":
        yield f"sqlite:///{tmp / 'orders.sqlite'}"
        return
    with fresh_database(server(), prefix="benchcmd_") as url:
        yield url


def _reader(url: str) -> Engine:
    """An engine for the lag reads: on SQLite a plain one (no BEGIN IMMEDIATE, so it never queues behind a writer)."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, poolclass=NullPool)
    return open_database(url, pool_size=1)


def _wait(done: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise CommandSideFailed(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)  # polling a condition with a deadline, not synchronisation


def _healthy(url: str, child: ChildProcess, *, status: str | None = None) -> bool:
    """True once ``url`` answers 200 (and, with ``status``, its JSON says that status); raises if ``child`` died."""
    if not child.alive():
        raise child.dead("on start")
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and (status is None or response.json().get("status") == status)


# --- the figures ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DrainFigures:
    """Step 2: ``rows`` published in ``seconds`` from the relay's spawn to lag 0; its first rows went out ``first_s``
    after the spawn, and the ``rows_after_first`` still waiting then took ``seconds - first_s``."""

    rows: int
    seconds: float
    first_s: float
    rows_after_first: int

    @property
    def events_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def after_first_per_s(self) -> float:
        rest = self.seconds - self.first_s
        return self.rows_after_first / rest if rest > 0 else float("nan")


@dataclass(frozen=True)
class LagFigures:
    """Step 3: the outbox lag while commands arrived (most rows, oldest age in ms) and the drain after the last answer."""

    max_rows: int
    max_age_ms: int
    drain_s: float

    @property
    def kept_up(self) -> bool:
        return self.max_age_ms <= KEPT_UP_S * 1000


@dataclass(frozen=True)
class LatencyFigures:
    """Step 4, in ms: 2xx -> visible in the replica (p50/p99/max over ``measured`` commands; ``missing``: answered 2xx,
    not visible within TAIL_S; ``warming``: sent in the first WARMUP_S, not counted), (p50, p99) of each stage and of
    the send -> 2xx round trip, and the rate actually sent."""

    measured: int
    missing: int
    warming: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    relay_ms: tuple[float, float]
    engine_ms: tuple[float, float]
    replica_ms: tuple[float, float]
    round_trip_ms: tuple[float, float]
    sent_per_s: float


@dataclass(frozen=True)
class CpuFigures:
    """CPU time (user + system) in ms per command (steps 1 and 3) or per event published (step 2, the relay's start
    included): of the service's process, of the relay's, and of this one (the sender's threads, the lag reads). The
    database server's own processes are not counted."""

    alone_service_ms: float
    alone_sender_ms: float
    drain_relay_ms: float
    together_service_ms: float
    together_relay_ms: float
    together_sender_ms: float


@dataclass(frozen=True)
class Figures:
    """One database's figures (steps 1-4)."""

    database: Database
    alone: SendReport
    drain: DrainFigures
    together: SendReport
    lag: LagFigures
    cpu: CpuFigures
    latency: LatencyFigures


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux's /proc; NaN when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- step 4: when each command's event passes each stage -------------------------------------------------------

@dataclass
class _Stamps:
    """When one command passed each stage (time.monotonic(); None: not seen)."""

    sent: float | None = None
    answered: float | None = None  # its 2xx arrived
    published: float | None = None  # its event read from the orders topic
    in_view: float | None = None  # a view record of the order with lastSeq >= its seq read committed
    visible: float | None = None  # the replica answered such a row


class _PacedTransport(httpx.BaseTransport):
    """The sender's transport for step 4: each request waits for its slot (1/rate apart) and is stamped when sent and
    when answered 2xx. Shared by the sender's clients, so closing one client must not close it: :meth:`shut` does."""

    def __init__(self, tracker: _Tracker, rate_per_s: float) -> None:
        self._inner = httpx.HTTPTransport()
        self._tracker = tracker
        self._interval_s = 1.0 / rate_per_s
        self._next_slot: float | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:  # slot n is start + n/rate: a late request is followed by quicker ones, so the rate holds
            if self._next_slot is None:
                self._next_slot = time.monotonic()
            slot = self._next_slot
            self._next_slot = slot + self._interval_s
        time.sleep(max(0.0, slot - time.monotonic()))  # pacing the stream, not synchronisation
        command_id = str(json.loads(request.content)["commandId"])
        self._tracker.stamp_command(command_id, "sent")
        response = self._inner.handle_request(request)
        if response.status_code < 300:
            self._tracker.stamp_command(command_id, "answered")
        return response

    def close(self) -> None:
        """Left open: the sender's other clients still use it."""

    def shut(self) -> None:
        self._inner.close()


class _Tracker:
    """Step 4's stamps: the paced transport stamps sent/answered; a consumer thread reads the orders and view topics
    (read_committed) and, for each view record, asks the replica for the row at that record's position."""

    def __init__(self, commands: list[WorkloadCommand], *, bootstrap: str, orders_topic: str, view_topic: str, replica_url: str) -> None:
        self.stamps = {(c.order_id, c.seq): _Stamps() for c in commands}
        self.key_of = {c.command.command_id: (c.order_id, c.seq) for c in commands}
        self.seqs_of: dict[str, list[int]] = {}
        for c in commands:
            self.seqs_of.setdefault(c.order_id, []).append(c.seq)
        self.bootstrap, self.orders_topic, self.view_topic, self.replica_url = bootstrap, orders_topic, view_topic, replica_url
        self.replica_errors: list[str] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._pool = ThreadPoolExecutor(32, thread_name_prefix="bench-replica")
        self._thread = threading.Thread(target=self._consume, name="bench-consume", daemon=True)

    def start(self) -> _Tracker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self._clients:
            client.close()

    def stamp_command(self, command_id: str, stage: Literal["sent", "answered"]) -> None:
        now = time.monotonic()
        with self._lock:
            stamps = self.stamps[self.key_of[command_id]]
            if getattr(stamps, stage) is None:
                setattr(stamps, stage, now)

    def _stamp_upto(self, order_id: str, last_seq: int, stage: str, now: float, *, after: str | None = None) -> None:
        """Stamp ``stage`` of the order's commands with seq <= ``last_seq`` (only those with ``after`` stamped)."""
        with self._lock:
            for seq in self.seqs_of.get(order_id, ()):
                stamps = self.stamps[(order_id, seq)]
                if seq <= last_seq and getattr(stamps, stage) is None and (after is None or getattr(stamps, after) is not None):
                    setattr(stamps, stage, now)

    def all_visible(self) -> bool:
        with self._lock:
            return all(s.visible is not None for s in self.stamps.values() if s.answered is not None)

    def _consume(self) -> None:
        codec = EventCodec()
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"bench-commands-{uuid.uuid4().hex[:8]}",
                             "isolation.level": "read_committed", "enable.auto.commit": False, "fetch.wait.max.ms": 20, "log_level": 0})
        try:
            assignment = []
            for topic in (self.orders_topic, self.view_topic):
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
            consumer.assign(assignment)
            while not self._stop.is_set():
                messages = consumer.consume(500, timeout=0.1)
                now = time.monotonic()
                for m in messages:
                    if m.error() is not None or m.value() is None:
                        continue
                    if m.topic() == self.orders_topic:
                        envelope = codec.decode(m.value())["envelope"]
                        self._stamp_upto(envelope["orderId"], envelope["seq"], "published", now)
                        continue
                    order_id, last_seq = m.key().decode(), int(orjson.loads(m.value())["row"]["lastSeq"])
                    self._stamp_upto(order_id, last_seq, "in_view", now)
                    self._pool.submit(self._read_replica, order_id, last_seq, m.partition(), m.offset())
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            consumer.close()

    def _read_replica(self, order_id: str, last_seq: int, partition: int, offset: int) -> None:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self.replica_url, timeout=REPLICA_WAIT_MS / 1000 + 5)
            with self._lock:
                self._clients.append(client)
        try:
            response = client.get(f"/views/{VIEW}/{order_id}",
                                  params={"min_position": f"{self.view_topic}:{partition}:{offset + 1}", "wait_ms": REPLICA_WAIT_MS})
            now = time.monotonic()
            shown = response.json()["row"]["row"]["lastSeq"] if response.status_code == 200 else None
        except (httpx.TransportError, ValueError, KeyError, TypeError) as exc:
            shown, response_text = None, f"{type(exc).__name__}: {exc}"
        else:
            response_text = f"{response.status_code} {response.text[:200]}"
        if shown is not None and shown >= last_seq:
            self._stamp_upto(order_id, last_seq, "visible", now, after="in_view")
        elif len(self.replica_errors) < 5:
            self.replica_errors.append(f"{order_id} lastSeq {last_seq} at {partition}/{offset}: {response_text}")

    def figures(self, *, sent_per_s: float) -> LatencyFigures:
        """The step's figures from the stamps (see :class:`LatencyFigures`)."""
        with self._lock:
            answered = [s for s in self.stamps.values() if s.answered is not None and s.sent is not None]
        first_sent = min((s.sent for s in answered if s.sent is not None), default=0.0)
        warming = sum(1 for s in answered if s.sent is not None and s.sent < first_sent + WARMUP_S)
        answered = [s for s in answered if s.sent is not None and s.sent >= first_sent + WARMUP_S]
        seen = [s for s in answered if s.visible is not None]

        def stage(start: str, end: str) -> tuple[float, float]:
            spans = [(getattr(s, end) - getattr(s, start)) * 1000 for s in answered if getattr(s, start) is not None and getattr(s, end) is not None]
            return _percentile(spans, 0.5), _percentile(spans, 0.99)

        total = [(s.visible - s.answered) * 1000 for s in seen if s.visible is not None and s.answered is not None]
        return LatencyFigures(
            measured=len(seen), missing=len(answered) - len(seen), warming=warming, p50_ms=_percentile(total, 0.5), p99_ms=_percentile(total, 0.99),
            max_ms=max(total, default=float("nan")), relay_ms=stage("answered", "published"), engine_ms=stage("published", "in_view"),
            replica_ms=stage("in_view", "visible"), round_trip_ms=stage("sent", "answered"), sent_per_s=sent_per_s,
        )


# --- one database ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchConfig:
    """What every database's run shares."""

    plan: Plan
    name: str
    bootstrap: str
    partitions: int
    workers: int
    rate_per_s: float
    commit_interval_s: float
    log_dir: Path
    #: Commands a request in steps 1 and 3 (1: one per endpoint; more: ``POST /commands``). Step 4 sends one a request.
    batch: int = 1


@dataclass
class _Run:
    """One database's run: its children (stopped at the end, newest first) and its lag reader."""

    cfg: BenchConfig
    database: Database
    url: str
    tmp: Path
    children: list[ChildProcess | PipelineChild] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = _reader(self.url)
        self.base_url = ""
        self.prefix = f"{self.cfg.name}.{self.database}."

    def say(self, text: str) -> None:
        _say(self.database, text)

    def lag_rows(self) -> int:
        return outbox_lag(self.reader).rows

    def check_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                raise (child.dead("during the run") if isinstance(child, ChildProcess)
                       else CommandSideFailed(f"rewind run {child.view} exited:\n{child.log_tail()}"))

    def start_relay(self, topic: str, n: int) -> ChildProcess:
        env = {"REWIND_DATABASE_URL": self.url, "KAFKA_BOOTSTRAP_SERVERS": self.cfg.bootstrap, "REWIND_ORDERS_TOPIC": topic,
               "REWIND_ORDERS_PARTITIONS": str(self.cfg.partitions)}
        relay = ChildProcess.start("the outbox relay", ["outbox", "relay", "--relay-id", f"{self.cfg.name}-relay", "--progress-interval-s", "5"],
                                   env=env, log_path=self.cfg.log_dir / self.database / f"relay-{n}.log")
        self.children.append(relay)
        return relay

    def send(self, label: str, commands: list[WorkloadCommand], *, transport: httpx.BaseTransport | None = None,
             on_progress: Callable[[], str] = lambda: "", batch: int = 1) -> SendReport:
        """Post ``commands`` with the sender (progress every 2 s); CommandSideFailed unless every one is accepted."""
        printed = [0.0]

        def progress(report: SendReport) -> None:
            self.check_alive()
            if report.done == report.total or time.monotonic() - printed[0] < 1.9:
                return  # the summary follows; the sender also reports as each of its threads ends
            printed[0] = time.monotonic()
            self.say(f"{label}: {report.done:,}/{report.total:,} commands, {report.commands_per_s:,.0f}/s{on_progress()}")

        report = send_commands(self.base_url, commands, workers=self.cfg.workers, progress=progress, progress_interval_s=2.0,
                               transport=transport, batch=batch)
        if report.accepted != len(commands):
            raise CommandSideFailed(f"{label}: not every command was accepted: {report.summary()}\n" + "\n".join(report.refusals))
        return report

    def run(self) -> Figures:
        """Steps 1-3 of the module docstring, then :meth:`latency` (step 4)."""
        cfg, plan = self.cfg, self.cfg.plan
        # Step 1
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        service = ChildProcess.start("the order service", ["orders", "serve", "--port", str(port), "--log-level", "warning"],
                                     env={"REWIND_DATABASE_URL": self.url}, log_path=cfg.log_dir / self.database / "service.log")
        self.children.append(service)
        _wait(lambda: _healthy(f"{self.base_url}/healthz", service), timeout_s=60, what="the order service's /healthz")
        self.say(f"1. the service alone: {len(plan.alone):,} commands, {cfg.workers} workers, no relay")
        service_cpu, own_cpu = _cpu_s(service.proc.pid), time.process_time()
        alone = self.send("1. service alone", plan.alone, batch=cfg.batch)
        alone_service_ms = (_cpu_s(service.proc.pid) - service_cpu) * 1000 / len(plan.alone)
        alone_sender_ms = (time.process_time() - own_cpu) * 1000 / len(plan.alone)
        self.say(f"1. {alone.summary()}")
        # Step 2
        backlog = self.lag_rows()
        orders_topic = f"{self.prefix}orders"
        self.say(f"2. the relay alone: draining {backlog:,} outbox rows to {orders_topic}")
        started = time.monotonic()
        relay = self.start_relay(orders_topic, 1)
        first: tuple[float, int] | None = None
        printed = started
        while (rows := self.lag_rows()) > 0:
            self.check_alive()
            now = time.monotonic()
            if first is None and rows < backlog:
                first = (now - started, rows)
            if now - printed >= 2:
                printed = now
                self.say(f"2. relay: {backlog - rows:,}/{backlog:,} published, {(backlog - rows) / (now - started):,.0f}/s since its spawn")
            if now - started > max(300.0, backlog / 50):
                raise CommandSideFailed(f"the relay did not drain {backlog:,} rows in {now - started:.0f} s:\n{relay.log_tail()}")
            time.sleep(0.1)  # polling the lag, not synchronisation
        seconds = time.monotonic() - started
        first_s, rows_after_first = first if first is not None else (seconds, 0)
        drain = DrainFigures(backlog, seconds, first_s, rows_after_first)
        drain_relay_ms = _cpu_s(relay.proc.pid) * 1000 / max(1, backlog)
        self.say(f"2. {backlog:,} rows in {seconds:.1f} s ({drain.events_per_s:,.0f}/s; first rows out after {first_s:.1f} s)")
        # Step 3
        self.say(f"3. the service and the relay together: {len(plan.together):,} commands")
        service_cpu, relay_cpu, own_cpu = _cpu_s(service.proc.pid), _cpu_s(relay.proc.pid), time.process_time()
        lag = _LagSampler(self.reader).start()
        try:
            together = self.send("3. together", plan.together, on_progress=lambda: f", outbox lag {lag.last_rows:,} rows", batch=cfg.batch)
            answered_at = time.monotonic()
            _wait(lambda: self.lag_rows() == 0, timeout_s=300, what="the outbox lag to reach 0 after step 3", interval_s=0.05)
            drain_s = time.monotonic() - answered_at
        finally:
            lag.stop()
        lag_figures = LagFigures(lag.max_rows, lag.max_age_ms, drain_s)
        cpu = CpuFigures(
            alone_service_ms=alone_service_ms, alone_sender_ms=alone_sender_ms, drain_relay_ms=drain_relay_ms,
            together_service_ms=(_cpu_s(service.proc.pid) - service_cpu) * 1000 / len(plan.together),
            together_relay_ms=(_cpu_s(relay.proc.pid) - relay_cpu) * 1000 / len(plan.together),
            together_sender_ms=(time.process_time() - own_cpu) * 1000 / len(plan.together),
        )
        self.say(f"3. {together.summary()}; outbox lag at most {lag.max_rows:,} rows / {lag.max_age_ms:,} ms, 0 again {drain_s:.2f} s "
                 f"after the last answer")
        # Step 4
        code = relay.stop()
        self.children.remove(relay)
        if code != 0:
            raise CommandSideFailed(f"the relay exited {code} on SIGTERM:\n{relay.log_tail()}")
        return Figures(self.database, alone, drain, together, lag_figures, cpu, self.latency())

    def latency(self) -> LatencyFigures:
        """Step 4: the stamps' reader, pipeline and replica on fresh topics, the relay again, then the paced stream."""
        cfg, commands = self.cfg, self.cfg.plan.paced
        prefix = f"{self.prefix}latency."
        settings = RewindSettings(kafka_bootstrap_servers=cfg.bootstrap, orders_topic=f"{prefix}orders", dlq_topic=f"{prefix}dlq",
                                  view_topic_prefix=prefix, commit_interval_s=cfg.commit_interval_s, orders_partitions=cfg.partitions)
        the_view_topic = view_topic(VIEW, prefix=prefix)
        # Both before their readers start: a topic created later is only noticed at the next metadata refresh.
        ensure_topic(cfg.bootstrap, settings.orders_topic, partitions=cfg.partitions, config=ORDERS_TOPIC_CONFIG)
        ensure_topic(cfg.bootstrap, the_view_topic, partitions=cfg.partitions, config=VIEW_TOPIC_CONFIG)
        port = free_port()
        replica_url = f"http://127.0.0.1:{port}"
        # First the reader of the stamps: it is fetching long before the first command is sent.
        tracker = _Tracker(commands, bootstrap=cfg.bootstrap, orders_topic=settings.orders_topic, view_topic=the_view_topic,
                           replica_url=replica_url).start()
        transport = _PacedTransport(tracker, cfg.rate_per_s)
        try:
            group = f"{cfg.name}-{self.database}-{VIEW}"
            self.children.append(PipelineChild.start(settings, VIEW, group=group, state_dir=self.tmp / "state",
                                                      log_path=cfg.log_dir / self.database / "pipeline.log"))
            replica = ChildProcess.start("the replica", ["serve", "--port", str(port), "--view-topic-prefix", prefix,
                                                         "--replica-dir", str(self.tmp / "replica")],
                                         env={"KAFKA_BOOTSTRAP_SERVERS": cfg.bootstrap}, log_path=cfg.log_dir / self.database / "replica.log")
            self.children.append(replica)
            self.say(f"4. latency: rewind run {VIEW} (checkpoint every {cfg.commit_interval_s:g} s) and rewind serve on {prefix}*; waiting for both")

            def ready() -> bool:
                self.check_alive()
                return group_members_with_partitions(cfg.bootstrap, group) > 0 and _healthy(f"{replica_url}/healthz", replica, status="ok")

            _wait(ready, timeout_s=120, what=f"rewind run {VIEW} to hold its partitions and the replica to be healthy", interval_s=0.5)
            relay = self.start_relay(settings.orders_topic, 2)

            def holds_shards() -> bool:
                self.check_alive()
                return re.search(r"holds \d+ of the shards", relay.log_path.read_text(errors="replace")) is not None

            _wait(holds_shards, timeout_s=60, what="the relay to hold its shards")
            self.say(f"4. sending {len(commands):,} commands at {cfg.rate_per_s:g}/s")
            report = self.send("4. paced", commands, transport=transport)
            deadline = time.monotonic() + TAIL_S
            while tracker.error is None and not tracker.all_visible() and time.monotonic() < deadline:
                self.check_alive()
                time.sleep(0.1)  # polling the stamps with a deadline, not synchronisation
        finally:
            tracker.stop()
            transport.shut()
        if tracker.error is not None:
            raise CommandSideFailed(f"reading the orders and view topics failed: {tracker.error}") from tracker.error
        figures = tracker.figures(sent_per_s=report.commands_per_s)
        if figures.missing:
            self.say(f"4. {figures.missing} commands answered 2xx were not visible in the replica within {TAIL_S:g} s: "
                     + "; ".join(tracker.replica_errors))
        return figures

    def stop(self) -> list[str]:
        """SIGTERM every child, newest first (SIGKILL after 30 s); what did not exit 0."""
        problems = []
        for child in reversed(self.children):
            try:
                child.stop(timeout_s=30.0)
                code = child.proc.returncode
            except Exception as exc:  # keep stopping the others
                problems.append(f"{child.log_path.name}: {exc}")
                continue
            if code != 0:
                problems.append(f"{child.log_path.name} exited {code}")
        self.reader.dispose()
        return problems


class _LagSampler:
    """Samples the outbox lag every LAG_SAMPLE_S in a thread: the most unpublished rows and the oldest age seen."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_rows = self.max_age_ms = self.last_rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-lag", daemon=True)

    def start(self) -> _LagSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _sample(self) -> None:
        while not self._stop.wait(LAG_SAMPLE_S):
            with contextlib.suppress(Exception):  # a busy database: the next sample counts
                rows, age_ms = outbox_lag(self.engine)
                self.last_rows = rows
                self.max_rows = max(self.max_rows, rows)
                self.max_age_ms = max(self.max_age_ms, age_ms or 0)


def bench_database(cfg: BenchConfig, database: Database, url: str, tmp: Path) -> Figures:
    """Steps 1-4 on the event store at ``url``; every child is stopped on the way out, also on failure."""
    run = _Run(cfg, database, url, tmp)
    try:
        return run.run()
    finally:
        for problem in run.stop():
            run.say(f"on stop: {problem}")


# --- the report -----------------------------------------------------------------------------------------------

def figures_table(results: list[Figures]) -> str:
    """The figures of each database side by side, one line per figure."""
    def n(value: float, digits: int = 0) -> str:
        return "-" if value != value else f"{value:,.{digits}f}"  # NaN: nothing measured

    def pair(values: tuple[float, float]) -> str:
        return f"{n(values[0])} / {n(values[1])}"

    rows: list[tuple[str, Callable[[Figures], str]]] = [
        ("1. service alone: commands/s", lambda f: n(f.alone.commands_per_s)),
        ("   commands, seconds", lambda f: f"{f.alone.accepted:,}, {f.alone.elapsed_s:.1f} s"),
        ("   CPU ms a command: service / sender", lambda f: f"{f.cpu.alone_service_ms:.2f} / {f.cpu.alone_sender_ms:.2f}"),
        ("2. relay alone: events/s (spawn to lag 0)", lambda f: n(f.drain.events_per_s)),
        ("   rows, seconds", lambda f: f"{f.drain.rows:,}, {f.drain.seconds:.1f} s"),
        ("   first rows out after (s)", lambda f: n(f.drain.first_s, 1)),
        ("   events/s after them", lambda f: n(f.drain.after_first_per_s)),
        ("   relay CPU ms an event", lambda f: f"{f.cpu.drain_relay_ms:.2f}"),
        ("3. together: commands/s", lambda f: n(f.together.commands_per_s)),
        ("   CPU ms a command: service / relay / sender",
         lambda f: f"{f.cpu.together_service_ms:.2f} / {f.cpu.together_relay_ms:.2f} / {f.cpu.together_sender_ms:.2f}"),
        ("   outbox lag at most (rows)", lambda f: f"{f.lag.max_rows:,}"),
        ("   oldest unpublished at most (ms)", lambda f: f"{f.lag.max_age_ms:,}"),
        ("   lag 0 after the last answer (s)", lambda f: f"{f.lag.drain_s:.2f}"),
        (f"   relay kept up (oldest <= {KEPT_UP_S:g} s)", lambda f: "yes" if f.lag.kept_up else "NO"),
        ("4. latency 2xx -> replica p50 (ms)", lambda f: n(f.latency.p50_ms)),
        ("   p99 (ms)", lambda f: n(f.latency.p99_ms)),
        ("   max (ms)", lambda f: n(f.latency.max_ms)),
        ("   stages p50 / p99: 2xx -> orders topic", lambda f: pair(f.latency.relay_ms)),
        ("   -> view record committed", lambda f: pair(f.latency.engine_ms)),
        ("   -> replica answer", lambda f: pair(f.latency.replica_ms)),
        ("   send -> 2xx (round trip)", lambda f: pair(f.latency.round_trip_ms)),
        ("   commands measured (not visible)", lambda f: f"{f.latency.measured:,} ({f.latency.missing})"),
        (f"   left out: sent in the first {WARMUP_S:g} s", lambda f: f"{f.latency.warming:,}"),
        ("   sent at (commands/s)", lambda f: n(f.latency.sent_per_s, 1)),
    ]
    cells: list[list[str]] = [[f.database for f in results], *([value(f) for f in results] for _, value in rows)]
    width = max(len(label) for label, _ in rows)
    column = max(len(cell) for line in cells for cell in line)
    labels = ["", *(label for label, _ in rows)]
    return "\n".join(f"{label:<{width}}" + "".join(f"  {cell:>{column}}" for cell in line) for label, line in zip(labels, cells, strict=True))


def main(
    orders: int = typer.Option(2000, min=1, help="Orders whose commands are sent in step 1 (the service alone), and as many again in step 3."),
    database: str = typer.Option("both", help="sqlite, postgresql, or both (one after the other, printed side by side)."),
    workers: int = typer.Option(8, min=1, max=256, help="Concurrent senders (threads, each with its own keep-alive connection)."),
    batch: int = typer.Option(1, min=1, max=1000, help="Steps 1 and 3: commands a request (1: each to its own endpoint; more: POST /commands)."),
    rate: float = typer.Option(50.0, min=1.0, max=10_000.0, help="Step 4: commands per second of the paced stream."),
    seconds: float = typer.Option(30.0, min=1.0, max=3600.0, help="Step 4: how long the paced stream lasts."),
    commit_interval_s: float = typer.Option(0.5, min=0.05, max=60.0, help="Step 4: checkpoint interval of rewind run (REWIND_COMMIT_INTERVAL_S)."),
    postgres_url: str | None = typer.Option(None, help="A PostgreSQL server to make the run's database on; default: a private server started for the run."),
    keep_topics: bool = typer.Option(False, help="Leave the run's topics (<name>.*) on the broker."),
    log_dir: Path | None = typer.Option(None, help="Where the children's logs are kept (default: a temp dir, removed at the end)."),
    seed: int = typer.Option(7, help="Seed of the generated orders."),
    kafka_bootstrap_servers: str = typer.Option(None, envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka cluster (default: the local broker)."),
) -> None:
    """Commands/s of one order service, events/s of one outbox relay, both together, and command -> replica latency."""
    choices: dict[str, list[Database]] = {"sqlite": ["sqlite"], "postgresql": ["postgresql"], "both": ["sqlite", "postgresql"]}
    if database not in choices:
        raise typer.BadParameter(f"--database {database!r}: use sqlite, postgresql or both")
    databases = choices[database]
    settings = RewindSettings(kafka_bootstrap_servers=kafka_bootstrap_servers)
    bootstrap = settings.bootstrap()
    name = f"benchcmd-{uuid.uuid4().hex[:8]}"
    typer.echo(f"topics {name}.*, broker {bootstrap}, {os.getloadavg()[0]:.1f} load average, {os.cpu_count()} cores")
    plan = plan_commands(orders=orders, paced=int(rate * seconds), seed=seed)
    typer.echo(f"commands: {len(plan.alone):,} of {orders:,} orders (step 1), {len(plan.together):,} of {orders:,} others (step 3), "
               f"{len(plan.paced):,} of further orders (step 4: {rate:g}/s for {seconds:g} s)")
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="rewind-bench-commands-") as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir)
        server: list[str] = []

        def postgres() -> str:
            if not server:
                server.append(stack.enter_context(_postgres_server(postgres_url, tmp)))
            return server[0]

        cfg = BenchConfig(plan=plan, name=name, bootstrap=bootstrap, partitions=settings.orders_partitions, workers=workers,
                          rate_per_s=rate, commit_interval_s=commit_interval_s, log_dir=log_dir or tmp / "logs", batch=batch)
        try:
            for db in databases:
                (tmp / db).mkdir()
                with _event_store(db, server=postgres, tmp=tmp / db) as url:
                    _say(db, f"event store {make_url(url).render_as_string(hide_password=True)}")
                    results.append(bench_database(cfg, db, url, tmp / db))
        finally:
            if not keep_topics:
                _delete_topics(bootstrap, f"{name}.")
    typer.echo(f"\non a machine with {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f}; {orders:,} orders a step, "
               f"{workers} workers, {batch} command(s) a request in steps 1 and 3, step 4 at {rate:g}/s for {seconds:g} s\n")
    typer.echo(figures_table(results))


def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics whose names start with ``prefix`` (best effort: a failure is printed, not raised)."""
    try:
        admin = admin_client(bootstrap)
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for future in admin.delete_topics(topics, operation_timeout=30).values() if topics else ():
            future.result(timeout=30)
    except Exception as exc:  # the figures matter more than the clean-up
        typer.echo(f"could not delete the topics {prefix}*: {exc}")


if __name__ == "__main__":
    typer.run(main)
