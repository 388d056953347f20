"""Keeps `rewind run NAME` alive through broker outages: run, and on a broker failure wait and run again.

Quix rides out a short outage by itself (its clients reconnect), but past about a minute its
transaction times out ("requires epoch bump") and :meth:`Application.run` raises, from the
loop or from its cleanup (``abort_transaction``: ``KafkaException _TIMED_OUT``). So
:func:`run_resilient` owns the process's life:

1. Wait until the broker answers a metadata request (:class:`BrokerWatch`), saying once per
   ``report_interval_s`` that it is unreachable and for how long.
2. Build a fresh pipeline (``build()``: a :class:`Runnable` with new clients, the same state
   directory and consumer group: :class:`QuixRun` around a Quix application, or the batch
   engine's :class:`~pipelines.batch.engine.BatchRun`).
3. Run it. A clean return (SIGTERM/SIGINT, or the idle timeout) ends the loop.
4. A broker failure (:func:`is_broker_failure`, or any failure while the broker does not
   answer) drops the application and goes back to step 1, after a capped backoff when runs
   keep failing while the broker answers. Restarting is safe under exactly-once: the failed
   run's open transaction (outputs, changelogs, offsets) is aborted by the broker, or fenced
   by the next run's producer (same ``transactional.id``), and the next run redoes that work
   from the committed offsets and the state recovered from the committed changelogs.
   Quix's ``run`` closes its RocksDB stores in its own cleanup (its ExitStack closes the state
   manager before it raises), so the next run can open the same directory.

Anything else a run raises is a bug: :class:`PipelineFailedError`, one line. A
:class:`~schemas.errors.RewindError` (bad configuration, state that does not fit the group)
passes through unchanged. With ``limit_s`` > 0, an outage longer than that ends the process
with :class:`BrokerOutageError` (one line, exit 1); by default it waits for as long as it takes.

While a pipeline runs, librdkafka and Quix log every failed connection (hundreds of lines a
minute, several per second at first): :class:`ClientNoiseFilter` drops those lines and counts
them, and the watch's one line per interval says what they said.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Final, Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from quixstreams.checkpointing.exceptions import CheckpointProducerTimeout
from quixstreams.internal_producer import KafkaProducerTransactionCommitFailed
from quixstreams.kafka.exceptions import BaseKafkaException, KafkaBrokerUnavailableError
from quixstreams.models.topics.exceptions import CreateTopicTimeout, TopicNotFoundError
from quixstreams.state.exceptions import ChangelogFlushError

from pipelines.client_logs import ClientNoiseFilter
from pipelines.errors import BrokerUnreachableError
from pipelines.live.application import LivePipeline, run_pipeline
from pipelines.live.stats import PipelineStats
from pipelines.topics import admin_client
from schemas.errors import RewindError

__all__ = [
    "BROKER_FAILURES",
    "BrokerOutageError",
    "BrokerWatch",
    "ClientNoiseFilter",
    "OutagePolicy",
    "PipelineFailedError",
    "QuixRun",
    "Runnable",
    "is_broker_failure",
    "run_resilient",
]

log = logging.getLogger("rewind.live")

#: What a lost (or not yet consistent) broker raises out of a Quix run or a build: the client's
#: own error, Quix's wrappers around it (delivery, consumer, transaction commit, checkpoint
#: flush, broker availability timeout, topic creation timeout, a new topic missing from the
#: metadata) and our own metadata check. Retried: a cause that persists shows as one line per
#: attempt, at most every 30 s, and ``--outage-limit-s`` bounds it.
BROKER_FAILURES: Final[tuple[type[BaseException], ...]] = (
    KafkaException,
    BaseKafkaException,
    KafkaBrokerUnavailableError,
    KafkaProducerTransactionCommitFailed,
    CheckpointProducerTimeout,
    ChangelogFlushError,
    CreateTopicTimeout,
    TopicNotFoundError,  # a topic Quix just created, not yet in the metadata it reads back (seen under load)
    BrokerUnreachableError,
)

#: A run that lasted this long was healthy: the next failure starts a new outage (clock, backoff).
HEALTHY_RUN_S: Final = 60.0
#: Longest pause between restarts while the broker answers but runs keep failing.
MAX_RESTART_BACKOFF_S: Final = 30.0
#: Longest pause between two probes of a broker that does not answer.
MAX_PROBE_BACKOFF_S: Final = 10.0


class BrokerOutageError(BrokerUnreachableError):
    """The broker stayed unreachable longer than ``--outage-limit-s``: the process gives up (exit 1).

    Nothing is lost: the work since the last checkpoint is redone by the next start. Start the
    pipeline again once the broker is back, or raise the limit (0: wait for as long as it takes).
    """


class PipelineFailedError(RewindError):
    """A pipeline run raised something that is not a broker failure: a bug, reported in one line with where it was raised.

    Restarting would fail the same way, so the process exits 1; the committed offsets, state and
    views are intact (the failed transaction is aborted), and a fixed build resumes from them.
    """


@dataclass(frozen=True, slots=True)
class OutagePolicy:
    """How `rewind run` rides out an outage.

    ``report_interval_s``: seconds between "unreachable" lines (and between probes of a broker
    that answers). ``limit_s``: give up after an outage this long (0: never). ``probe_timeout_s``:
    how long one metadata request may take before the broker counts as unreachable.
    """

    report_interval_s: float = 30.0
    limit_s: float = 0.0
    probe_timeout_s: float = 5.0


def is_broker_failure(exc: BaseException) -> bool:
    """True if ``exc``, or an exception it was raised from or while handling, is a broker failure (:data:`BROKER_FAILURES`).

    The chain matters: Quix's cleanup after a failed run aborts the transaction, and when
    that times out too its ``KafkaException`` replaces the first error (kept as ``__context__``).
    """
    return any(isinstance(link, BROKER_FAILURES) for link in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _first_error(exc: BaseException) -> BaseException:
    """The error that started ``exc``'s chain (the one later cleanup errors were raised while handling)."""
    *_, first = _chain(exc)
    return first


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to 300 characters."""
    text = " ".join(str(exc).split()) or "(no message)"
    line = f"{type(exc).__name__}: {text}"
    return line if len(line) <= 300 else line[:297] + "..."


def _where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame that raised ``exc`` ('' without a traceback)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


class BrokerWatch:
    """Asks the broker for metadata from a daemon thread and says, once per interval, when it does not answer.

    While the broker answers it is probed every ``report_interval_s`` (and at once on
    :meth:`probe_soon`); while it does not, with backoff (1, 2, 4 ... up to 10 s between probes),
    and one WARNING line per ``report_interval_s`` says for how long it has been unreachable.
    One INFO line says when it answers again. ``what`` names the process in those lines.
    """

    def __init__(self, bootstrap: str, *, what: str, report_interval_s: float, probe_timeout_s: float = 5.0,
                 noise: ClientNoiseFilter | None = None) -> None:
        self.bootstrap = bootstrap
        self._what = what
        self._interval_s = report_interval_s
        # A probe at most half an interval long, so that a report is never late by a whole probe.
        self._probe_timeout_s = min(probe_timeout_s, report_interval_s / 2)
        self._noise = noise
        self._cond = threading.Condition()
        self._stopped = False
        self._wake = False
        self._probes = 0  # probes finished, for "a probe newer than this one" (wait_answering)
        self._up = True
        self._down_since: float | None = None
        self.reports = 0  # "unreachable" lines logged
        self._thread = threading.Thread(target=self._loop, name="rewind-broker-watch", daemon=True)

    def start(self) -> BrokerWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        # Not a long join: a probe in flight may take probe_timeout_s, and the thread is a daemon that exits after it.
        self._thread.join(1.0)

    def down_for_s(self) -> float | None:
        """Seconds since the first failed probe of the current outage; None while the broker answers."""
        with self._cond:
            return None if self._down_since is None else time.monotonic() - self._down_since

    def probe_soon(self) -> int:
        """Ask for a probe now; returns the number of probes finished before it (see :meth:`answered_since`)."""
        with self._cond:
            self._wake = True
            self._cond.notify_all()
            return self._probes

    def probes(self) -> int:
        """Probes finished so far."""
        with self._cond:
            return self._probes

    def answered_since(self, probes: int) -> bool | None:
        """None until a probe after the ``probes``-th has finished; then whether the last one was answered."""
        with self._cond:
            return None if self._probes <= probes else self._up

    def _loop(self) -> None:
        admin = admin_client(self.bootstrap)
        backoff_s = 1.0
        next_report = 0.0
        while True:
            started = time.monotonic()
            up = self._probe(admin)
            now = time.monotonic()
            with self._cond:
                if up:
                    if self._down_since is not None:
                        log.info("%s: broker %s answers again after %.0f s unreachable", self._what, self.bootstrap, now - self._down_since)
                    self._down_since = None
                    backoff_s = 1.0
                    pause = self._interval_s
                else:
                    if self._down_since is None:
                        self._down_since = started
                        next_report = now
                    if now >= next_report:
                        self._report(now)
                        next_report += self._interval_s * (int((now - next_report) // self._interval_s) + 1)
                    # Probe again after the backoff, or in time for the next report, whichever comes first.
                    pause = max(0.0, min(backoff_s, MAX_PROBE_BACKOFF_S, next_report - self._probe_timeout_s - now))
                    backoff_s *= 2
                self._up = up
                self._probes += 1
                self._cond.notify_all()
                deadline = time.monotonic() + pause
                while not (self._stopped or self._wake) and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._stopped:
                    return
                self._wake = False

    def _probe(self, admin: AdminClient) -> bool:
        try:
            admin.list_topics(timeout=self._probe_timeout_s)
        except KafkaException:
            return False
        return True

    def _report(self, now: float) -> None:
        assert self._down_since is not None
        dropped = self._noise.dropped if self._noise is not None else 0
        self.reports += 1
        log.warning(
            "%s: broker %s unreachable for %.0f s; retrying with backoff, next report in %g s (%d client log lines suppressed so far)",
            self._what, self.bootstrap, now - self._down_since, self._interval_s, dropped,
        )


class _StopSignals:
    """Notes SIGTERM/SIGINT, whoever handles them.

    Between runs our own handlers set :attr:`requested`. During a run Quix installs its own
    (they stop the app), so a wakeup fd, which sees every signal a Python handler catches,
    tells afterwards whether a stop was asked for: a run that then failed for want of a broker
    must end the process, not restart.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    @contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.ours()
            yield self
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._reader.close()
            self._writer.close()

    def ours(self) -> None:
        """(Re)install our handlers: a run replaces them with Quix's, and resets SIGTERM to the default on its way out."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.requested.set()

    def seen(self) -> bool:
        """True once SIGTERM/SIGINT has arrived (drains the wakeup fd)."""
        try:
            while data := self._reader.recv(512):
                if signal.SIGTERM in data or signal.SIGINT in data:
                    self.requested.set()
        except BlockingIOError:
            pass
        return self.requested.is_set()


@dataclass
class _Outage:
    """The current run of trouble: when it began and how many runs failed in it."""

    since: float | None = None
    failures: int = 0

    def begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def end(self) -> None:
        self.since, self.failures = None, 0

    def lasted_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


class Runnable(Protocol):
    """One built pipeline run, whatever the engine: :class:`QuixRun` or the batch engine's ``BatchRun``."""

    @property
    def stats(self) -> PipelineStats: ...

    def run(self, *, idle_timeout_s: float, stop: threading.Event) -> PipelineStats:
        """Run until ``stop`` is set (or SIGTERM/SIGINT, which set it), or idle for ``idle_timeout_s`` > 0."""

    def discard(self) -> None:
        """Release a pipeline that was built but will not run."""


@dataclass
class QuixRun:
    """A Quix :class:`LivePipeline` as a :class:`Runnable` (Quix installs its own signal handlers while it runs)."""

    pipeline: LivePipeline

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    def run(self, *, idle_timeout_s: float, stop: threading.Event) -> PipelineStats:
        return run_pipeline(self.pipeline, idle_timeout_s=idle_timeout_s)

    def discard(self) -> None:
        self.pipeline.lag_probe.stop()


def run_resilient(
    build: Callable[[], Runnable],
    *,
    view: str,
    bootstrap: str,
    idle_timeout_s: float = 0.0,
    policy: OutagePolicy | None = None,
) -> PipelineStats:
    """Run ``build()``'s pipeline until SIGTERM/SIGINT or the idle timeout, through broker outages (module docstring).

    Returns the counters of every run added up (a restarted run redoes the failed run's
    uncommitted work, so events_in may count an event twice; the views never do). Raises
    :class:`BrokerOutageError` after an outage longer than ``policy.limit_s`` (> 0),
    :class:`PipelineFailedError` for any other failure, and a RewindError from ``build``
    unchanged. Must be called from the main thread (it handles signals).
    """
    policy = policy or OutagePolicy()
    what = f"pipeline {view}"
    totals = PipelineStats(view)
    noise = ClientNoiseFilter()
    noise.install()
    watch = BrokerWatch(bootstrap, what=what, report_interval_s=policy.report_interval_s,
                        probe_timeout_s=policy.probe_timeout_s, noise=noise).start()
    outage = _Outage()
    runs = 0
    try:
        with _StopSignals().installed() as signals:
            while True:
                # Step 1: a broker that answers (at once, unless a run just failed or it is down at start).
                if not _wait_for_broker(watch, signals, outage, policy, what=what):
                    break
                # Step 2: a fresh application.
                try:
                    pipeline = build()
                except BaseException as exc:
                    if isinstance(exc, RewindError) and not isinstance(exc, BrokerUnreachableError):
                        raise
                    if not is_broker_failure(exc):
                        raise PipelineFailedError(f"{what}: building it failed: {_describe(exc)} ({_where(exc)})") from exc
                    outage.begin()
                    outage.failures += 1
                    log.warning("%s: could not build it: the broker failed (%s); retrying once it answers",
                                what, _describe(_first_error(exc)))
                    del exc
                    if not _back_off(signals, outage):
                        break
                    continue
                noise.install()  # Quix configured its logging handler while building
                if signals.seen():
                    pipeline.discard()
                    break
                # Step 3: run it.
                runs += 1
                started = time.monotonic()
                try:
                    stats = pipeline.run(idle_timeout_s=idle_timeout_s, stop=signals.requested)
                except BaseException as exc:  # KeyboardInterrupt too: a second Ctrl+C in a run
                    totals.add_counts(pipeline.stats)
                    ran_s = time.monotonic() - started
                    if signals.seen() or isinstance(exc, KeyboardInterrupt):
                        log.info("%s: stopped by signal while failing (%s); uncommitted work is redone by the next start",
                                 what, _describe(_first_error(exc)))
                        break
                    # Step 4: a broker failure, or anything at all while the broker does not answer.
                    if not is_broker_failure(exc) and _answers(watch, signals):
                        if isinstance(exc, RewindError):
                            raise
                        first = _first_error(exc)
                        raise PipelineFailedError(f"{what}: run {runs} failed: {_describe(first)} ({_where(first)})") from exc
                    if ran_s >= HEALTHY_RUN_S:
                        outage.end()
                    outage.begin()
                    outage.failures += 1
                    log.warning("%s: run %d failed after %.0f s: the broker failed it (%s); restarting once it answers",
                                what, runs, ran_s, _describe(_first_error(exc)))
                    del pipeline, exc
                    gc.collect()  # drop the failed run's clients now (their threads keep reconnecting until destroyed)
                    if not _back_off(signals, outage):
                        break
                    continue
                totals.add_counts(stats)
                break
    finally:
        watch.stop()
    return totals


def _back_off(signals: _StopSignals, outage: _Outage) -> bool:
    """After the ``outage.failures``-th failure in a row: no pause after the first, then 2, 4 ... up to 30 s; False if stopped meanwhile."""
    if outage.failures <= 1:
        return not signals.seen()
    return _pause(signals, min(2.0 ** (outage.failures - 1), MAX_RESTART_BACKOFF_S))


def _pause(signals: _StopSignals, seconds: float) -> bool:
    """Wait ``seconds``; False if a stop was asked for meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if signals.seen():
            return False
        signals.requested.wait(min(left, 0.25))
    return not signals.seen()


def _answers(watch: BrokerWatch, signals: _StopSignals) -> bool:
    """Whether the broker answers a fresh probe (False if a stop was asked for first)."""
    before = watch.probe_soon()
    while (answer := watch.answered_since(before)) is None:
        if signals.seen():
            return False
        signals.requested.wait(0.25)
    return answer


def _wait_for_broker(watch: BrokerWatch, signals: _StopSignals, outage: _Outage, policy: OutagePolicy, *, what: str) -> bool:
    """Block until a fresh probe is answered (True), a stop is asked for (False), or the outage limit is passed (raises)."""
    signals.ours()
    before = watch.probe_soon()
    while True:
        if signals.seen():
            return False
        # The limit counts the whole trouble: the broker unreachable, or runs failing since it came back.
        lasted_s = max(outage.lasted_s(), watch.down_for_s() or 0.0)
        if policy.limit_s > 0 and lasted_s > policy.limit_s:
            raise BrokerOutageError(
                f"{what}: broker {watch.bootstrap} unreachable or failing runs for {lasted_s:.0f} s, past --outage-limit-s "
                f"{policy.limit_s:g}; giving up (nothing is lost: the next start redoes the uncommitted work)"
            )
        answer = watch.answered_since(before)
        if answer:
            return True
        if answer is False:
            outage.begin()
            before = watch.probes()  # then wait for the watch's next probe, at its own backoff
        signals.requested.wait(0.25)
