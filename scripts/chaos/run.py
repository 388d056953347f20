"""The soak's timeline.

1. Take a fresh run directory (:mod:`scripts.chaos.rundir`) and start a private broker in it.
2. Create the run's orders topic; generate a workload big enough for ``rate x duration``.
3. Start every pipeline and the replica; start the paced producer and the monitor (t = 0).
4. Until ``duration``: every 20-60 s (seeded) kill -9 a random process and start it again at
   once; at two moments spread over the run stop the broker (SIGTERM, then SIGKILL the next
   time), wait ``outage_s``, start it again. A process that ends on its own is recorded and
   started again (once the broker is back). No kill while the broker is down, and no outage
   until every process has been up 15 s (so a start-up check never meets a dead broker).
5. Stop the producer; wait until every record sent is acknowledged; write the oracle of
   exactly that prefix.
6. Catch-up (bounded by ``settle_timeout_s``): every pipeline has no record left to read on
   the orders topic or its repartition topics, then the replica none on the view topics.
7. Ask the replica over HTTP for a sample of rows; stop every process with SIGTERM.
8. Check the view topics, the replica store and the DLQ against the oracle; stop the broker.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from pipelines.topics import ORDERS_TOPIC_CONFIG, ensure_topic, view_topic
from schemas.errors import RewindError
from scripts.chaos import checks
from scripts.chaos.children import Supervised, pipeline_process, replica_process
from scripts.chaos.config import REPLICA, SoakConfig, pipeline_group, soak_settings
from scripts.chaos.monitor import Monitor
from scripts.chaos.probe import Position, Probe, unread_records
from scripts.chaos.producer import PacedProducer
from scripts.chaos.report import Event, Outage, Summary
from scripts.chaos.rundir import new_run, note_child
from scripts.kafka_local.private_broker import PrivateBroker, private_broker
from scripts.local_service.ports import port_free
from scripts.workload import Workload, WorkloadConfig, generate, write_oracle

__all__ = ["run_soak", "SoakInterrupted"]

#: A process must have been up this long before the broker may go down (its start-up checks are done).
SETTLED_UP_S = 15.0
#: An outage waits at most this long for that.
MAX_OUTAGE_DELAY_S = 30.0
#: Rows per view asked over HTTP (the whole replica is read from its store afterwards).
HTTP_SAMPLE = 25


class SoakInterrupted(RewindError):
    """SIGINT or SIGTERM: the soak stopped its children and its broker and gives up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def _signals_raise() -> Iterator[None]:
    """The first SIGINT/SIGTERM raises SoakInterrupted in the main thread; later ones are ignored (clean-up runs)."""
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if not fired:
            fired.append(signum)
            raise SoakInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _free_port(taken: set[int]) -> int:
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32767)
        if port not in taken and port_free(port):
            return port
    raise RewindError("no free loopback port in 20000-32767 for the replica")


def _workload(config: SoakConfig) -> Workload:
    """About ``rate x duration`` records (4.1 per order at 3 days; 5 % spare)."""
    records = math.ceil(config.rate * config.duration_s * 1.05) + 50
    return generate(WorkloadConfig(seed=config.seed, orders=math.ceil(records / 4.0), days=3.0,
                                   poison_rate=config.poison_rate, old_version_rate=config.old_version_rate))


class Soak:
    """One run (see the module docstring for the steps)."""

    def __init__(self, config: SoakConfig, run: Path, broker: PrivateBroker, console: Console) -> None:
        self.config = config
        self.run = run
        self.broker = broker
        self.console = console
        self.rng = random.Random(config.seed)
        self.settings = soak_settings(broker.bootstrap, name=f"soak-{run.name.split('-')[0].lower()}", state_dir=run / "state",
                                      commit_interval_s=config.commit_interval_s)
        self.summary = Summary(run, config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()})
        self.children: dict[str, Supervised] = {}
        self.broker_up = True
        self.t0 = time.monotonic()
        self.producer: PacedProducer | None = None
        self.monitor: Monitor | None = None
        self.replica_url = ""
        self._restart_later: set[str] = set()
        self.copied_poison: Counter[tuple[str, str]] = Counter()
        self._next_progress = 0.0

    # -- helpers -------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        self.console.print(f"[{self.elapsed():6.0f}s] {text}", markup=False, highlight=False)

    def event(self, what: str) -> None:
        self.summary.events.append(Event(self.elapsed(), what))
        self.say(what)

    def start_child(self, child: Supervised) -> None:
        child.start()
        assert child.proc is not None
        note_child(self.run, child.proc.pid)

    def tend(self) -> None:
        """Record processes that ended on their own and start them again (once the broker is up); print progress when due."""
        for name, child in self.children.items():
            ended = child.ended_on_its_own(at_s=self.elapsed())
            if ended is not None:
                self.summary.self_exits.append(ended)
                self.event(f"{name} EXITED ON ITS OWN (rc={ended.returncode}; {ended.log_path.name}): {ended.last_lines[-1] if ended.last_lines else ''}")
                self._restart_later.add(name)
        if self.broker_up:
            for name in sorted(self._restart_later):
                self.start_child(self.children[name])
                self.event(f"restarted {name} after its exit")
            self._restart_later.clear()
        if time.monotonic() >= self._next_progress:
            self._next_progress = time.monotonic() + self.config.progress_interval_s
            self.progress()

    def progress(self) -> None:
        p = self.producer.figures() if self.producer else {}
        stall = self.monitor.longest if self.monitor else None
        lags = ", ".join(f"{n} {s.lag}" for n, s in (self.monitor.latest.items() if self.monitor else ()))
        self.say(f"produced {p.get('sent', 0):,} (acked {p.get('acked', 0):,}) | kills {sum(c.kills for c in self.children.values())} | "
                 f"outages {len(self.summary.outages)}{' (BROKER DOWN)' if not self.broker_up else ''} | "
                 f"self-exits {len(self.summary.self_exits)} | max stall {stall.seconds if stall else 0:.0f}s"
                 f"{f' ({stall.pipeline})' if stall else ''} | lag: {lags}")

    def wait(self, seconds: float, *, until: Callable[[], bool] | None = None) -> bool:
        """Tend the children for ``seconds`` (or until ``until()``); True if ``until`` came true."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until is not None and until():
                return True
            self.tend()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return until is not None and until()

    # -- the steps -----------------------------------------------------------------------

    def start(self) -> Workload:
        # Step 2
        self.say(f"broker at {self.broker.bootstrap}; run dir {self.run}")
        ensure_topic(self.broker.bootstrap, self.settings.orders_topic, partitions=self.settings.orders_partitions, config=ORDERS_TOPIC_CONFIG)
        workload = _workload(self.config)
        self.say(f"workload: {len(workload.records):,} records ready (seed {self.config.seed}), {self.config.rate:g} events/s")
        # Step 3
        logs = self.run / "logs"
        for view in self.config.views:
            self.children[view] = pipeline_process(self.settings, view, state_dir=self.run / "state" / view, log_dir=logs)
        port = _free_port({self.broker.port, self.broker.controller_port})
        self.replica_url = f"http://127.0.0.1:{port}"
        self.children[REPLICA] = replica_process(self.settings, replica_dir=self.run / "replica", port=port, log_dir=logs, name=REPLICA)
        for child in self.children.values():
            self.start_child(child)
        self.t0 = time.monotonic()
        self.producer = PacedProducer(self.broker.bootstrap, self.settings.orders_topic, workload.records, rate=self.config.rate)
        self.producer.start()
        groups = {view: pipeline_group(self.settings, view) for view in self.config.views}
        self.monitor = Monitor(Probe(self.broker.bootstrap), orders_topic=self.settings.orders_topic, groups=groups, t0=self.t0)
        self.monitor.start()
        self.event(f"started {', '.join(self.children)} (replica at {self.replica_url}) and the workload")
        return workload

    def chaos(self) -> None:
        """Step 4: a kill when one is due (never while the broker is down), else an outage when one is due and every
        process has been up ``SETTLED_UP_S`` (or it has waited ``MAX_OUTAGE_DELAY_S``)."""
        c = self.config
        span = c.duration_s / (c.broker_restarts + 1)
        outages = [span * (i + 1) + self.rng.uniform(-0.15, 0.15) * span for i in range(c.broker_restarts)]
        next_kill = self.rng.uniform(c.kill_min_s, c.kill_max_s)
        while self.elapsed() < c.duration_s:
            now = self.elapsed()
            if now >= next_kill:
                victim = self.rng.choice(sorted(self.children))
                child = self.children[victim]
                if child.alive():
                    child.kill9()
                    self.start_child(child)
                    self.event(f"kill -9 {victim} (kill {child.kills} of it), started again")
                next_kill = self.elapsed() + self.rng.uniform(c.kill_min_s, c.kill_max_s)
                continue
            if outages and now >= outages[0]:
                settled = all(ch.up_for_s() >= SETTLED_UP_S for ch in self.children.values())
                if settled or now >= outages[0] + MAX_OUTAGE_DELAY_S:
                    if not settled:
                        self.say(f"not every process has been up {SETTLED_UP_S:g} s; stopping the broker anyway")
                    outages.pop(0)
                    self.outage(hard=len(self.summary.outages) % 2 == 1)
                    continue
            self.wait(0.5)
        self.summary.chaos_s = self.elapsed()

    def outage(self, *, hard: bool) -> None:
        start = self.elapsed()
        self.event(f"broker stop ({'SIGKILL' if hard else 'SIGTERM'})")
        self.broker_up = False
        self.broker.stop(hard=hard)
        self.event(f"broker down; starting it again in {self.config.outage_s:g} s")
        self.wait(self.config.outage_s)
        self.broker.start()
        self.broker_up = True
        self.summary.outages.append(Outage(start, self.elapsed(), hard))
        self.event(f"broker back after {self.elapsed() - start:.0f} s")
        self.tend()

    def stop_workload(self, workload: Workload) -> Path:
        """Step 5: the oracle of exactly what was acknowledged."""
        assert self.producer is not None
        still = self.producer.stop()
        figures = self.producer.figures()
        self.summary.produced = {**figures, "workload_records": len(workload.records), "in_flight_after_flush": still}
        self.event(f"workload stopped: {figures['sent']:,} sent, {figures['acked']:,} acked, {figures['failed']} failed")
        if still or figures["failed"] or figures["acked"] != figures["sent"]:
            self.summary.harness_error = (f"the load generator lost track of records ({figures['sent']} sent, {figures['acked']} acked, "
                                          f"{figures['failed']} failed: {figures['first_error']}, {still} in flight): no oracle to compare with")
            raise RewindError(self.summary.harness_error)
        sent = Workload(workload.config, workload.records[: figures["sent"]], workload.orders, workload.catalog)
        # Polled: right after a broker restart a partition's last acknowledged records can stay above its high
        # watermark for a while (seen once: 1 of 3,040 missing 8 s after a SIGKILLed broker came back).
        deadline = time.monotonic() + 60.0
        topic = checks.check_orders(self.settings, sent.records)
        while (topic.missing or topic.foreign) and time.monotonic() < deadline:
            time.sleep(2.0)
            topic = checks.check_orders(self.settings, sent.records)
        self.summary.produced.update(in_topic=topic.records, producer_copies=topic.copies)
        self.copied_poison = topic.copied_poison
        self.event(f"orders topic: {topic.records:,} records = {figures['sent']:,} sent + {topic.copies} exact copies (producer retries); "
                   f"{topic.missing} missing, {topic.foreign} foreign")
        if topic.missing or topic.foreign:
            self.summary.harness_error = (f"the orders topic is not what the load generator sent ({topic.missing} missing, {topic.foreign} foreign): "
                                          "no oracle to compare with")
            raise RewindError(self.summary.harness_error)
        oracle = self.run / "oracle.sqlite"
        write_oracle(sent, oracle, topic=self.settings.orders_topic)
        return oracle

    def pipeline_position(self, probe: Probe, view: str) -> Position:
        group = pipeline_group(self.settings, view)
        return probe.committed(group, probe.pipeline_topics(group, self.settings.orders_topic))

    def replica_position(self, probe: Probe) -> Position | None:
        try:
            body = httpx.get(f"{self.replica_url}/healthz", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return None
        stored = {t: {int(p): o for p, o in parts.items()} for t, parts in body.get("position", {}).items()}
        out: Position = {}
        for view in self.config.views:
            topic = view_topic(view, prefix=self.settings.view_topic_prefix)
            out[topic] = {p: stored.get(topic, {}).get(p, 0) for p in probe.partitions(topic)}
        return out

    def settle(self) -> None:
        """Step 6: poll (deadline ``settle_timeout_s``) until nothing is left to read for any pipeline, then the replica."""
        start = time.monotonic()
        probe = Probe(self.broker.bootstrap)
        behind: dict[str, str] = {name: "not asked yet" for name in self.children}

        def caught_up() -> bool:
            for name in list(behind):
                try:
                    if name == REPLICA:
                        if any(n != REPLICA for n in behind):
                            continue  # the replica can only finish after the pipelines
                        position = self.replica_position(probe)
                        unread = None if position is None else unread_records(self.broker.bootstrap, position, timeout_s=20)
                    else:
                        unread = unread_records(self.broker.bootstrap, self.pipeline_position(probe, name), timeout_s=20)
                except Exception as exc:  # a broker hiccup: ask again next round
                    behind[name] = f"{type(exc).__name__}: {exc}"
                    continue
                if unread == 0 and self.children[name].alive():
                    del behind[name]
                else:
                    behind[name] = "unknown" if unread is None else f"{unread}+ records unread"
            return not behind

        self.say("catching up: waiting until every pipeline, then the replica, has read everything")
        done = self.wait(self.config.settle_timeout_s, until=caught_up)
        self.summary.settle_s = time.monotonic() - start
        if done:
            self.event(f"caught up after {self.summary.settle_s:.0f} s")
        else:
            self.summary.caught_up = "; ".join(f"{n}: {why}" for n, why in behind.items()) + f" after {self.config.settle_timeout_s:g} s"
            self.event(f"NOT caught up: {self.summary.caught_up}")

    def check(self, oracle: Path) -> None:
        """Steps 7-8."""
        expected = checks.expected_from(oracle, self.config.views)
        all_keys = {view: set(rows) for view, rows in expected.rows.items()}
        if "revenue-hourly" in self.config.views:
            all_keys["revenue-hourly"] = set(expected.windows)
        http: dict[str, checks.Rows] = {}
        for view, keys in all_keys.items():
            try:
                http[view] = checks.http_rows(self.replica_url, view, checks.sample_keys(keys, n=HTTP_SAMPLE, seed=self.config.seed))
            except httpx.HTTPError as exc:
                self.say(f"replica HTTP: {exc}")
        self.summary.final_exit_codes = {name: child.stop() for name, child in self.children.items()}
        self.event("stopped every process with SIGTERM")
        dlq = checks.read_dlq(self.settings)
        late, self.summary.late_letters = checks.late_letters(oracle, dlq)
        for view in self.config.views:
            topic = checks.topic_rows(self.settings, view)
            keys = set(topic) | all_keys[view]
            replica = checks.replica_rows(self.run / "replica", view, keys)
            if view == "revenue-hourly":
                found = [checks.check_revenue(f"view {view}", topic, late, expected.windows),
                         checks.check_revenue(f"replica {view}", replica, late, expected.windows)]
                sample = {k: v for k, v in topic.items() if k in http.get(view, {})}
                found.append(checks.check_rows(f"replica-http {view}", http.get(view, {}),
                                               {k: {"revenueMinor": v["row"].get("revenueMinor")} for k, v in sample.items()}))
            else:
                rows = expected.rows[view]
                found = [checks.check_rows(f"view {view}", topic, rows), checks.check_rows(f"replica {view}", replica, rows),
                         checks.check_rows(f"replica-http {view}", http.get(view, {}), {k: rows[k] for k in http.get(view, {}) if k in rows})]
            self.summary.findings += found
        dlq_findings = checks.check_dlq(dlq, self.config.views, expected.dead_letters, self.copied_poison)
        self.summary.findings += dlq_findings.values()
        self.summary.dlq = {view: (sum(expected.dead_letters.values()), checks.found_letters(dlq, view)) for view in self.config.views}

    def shutdown(self) -> None:
        """Whatever happened: stop the producer, the monitor and every child still running."""
        if self.monitor is not None:
            self.monitor.stop()
            self.summary.stall = self.monitor.longest
            self.summary.stalls = self.monitor.stalls()
        if self.producer is not None and self.summary.produced == {}:
            self.producer.stop(flush_timeout_s=5.0)
        for child in self.children.values():
            if child.alive():
                child.stop(timeout_s=10.0)
        self.summary.kills = {name: child.kills for name, child in self.children.items()}


def run_soak(config: SoakConfig, *, console: Console) -> Summary:
    """Run one soak (see the module docstring); the summary says what it found. Raises SoakInterrupted on SIGINT/SIGTERM."""
    config.check()
    with _signals_raise(), new_run(config.run_dir, seed=config.seed) as run:
        console.print(f"chaos soak: {config.minutes:g} min at {config.rate:g} events/s, kills every {config.kill_min_s:g}-{config.kill_max_s:g} s, "
                      f"{config.broker_restarts} broker restarts of {config.outage_s:g} s, seed {config.seed}", markup=False, highlight=False)
        soak: Soak | None = None
        try:
            with private_broker(run / "broker") as broker:
                soak = Soak(config, run, broker, console)
                try:
                    workload = soak.start()
                    soak.chaos()
                    oracle = soak.stop_workload(workload)
                    soak.settle()
                    soak.check(oracle)
                finally:
                    soak.shutdown()
        except SoakInterrupted:
            raise
        except Exception as exc:  # the soak itself failed (not a finding about the product): say so in the verdict
            if soak is None:
                raise
            (run / "soak-error.txt").write_text(traceback.format_exc())
            soak.summary.harness_error = soak.summary.harness_error or f"the soak stopped early: {type(exc).__name__}: {exc} (see {run}/soak-error.txt)"
        assert soak is not None
        (run / "summary.json").write_text(json.dumps(soak.summary.to_json(), indent=2, sort_keys=True))
        return soak.summary

