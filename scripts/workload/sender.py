"""Posting the workload's commands to a running order service (`rewind orders serve`) over HTTP.

:func:`send_commands` runs ``workers`` threads, each with its own keep-alive HTTP client, and
hands them the commands in the order given (the workload's emission order):

1. A worker takes the next command in that order, unless a command of the same order is still
   in flight: then it waits until that one is answered. So each order's commands are sent one
   after the other, in seq order, and overall the service sees them in the given order, except
   for the at most ``workers`` commands in flight at a time.
2. It posts the command. A 503 (the database did not answer), a 409 ``ConcurrentCommandError``
   (another command on the order won its seq) or a connection error is retried with
   exponential backoff for up to ``retry_for_s``: a retry carries the same command id, so a
   command that did commit before its answer was lost is answered again and writes nothing.
3. Any other answer is final: 2xx accepted (``Idempotent-Replayed`` ones counted apart),
   4xx/5xx refused, counted by status and error name with the first few reasons kept.
4. A command that still fails after ``retry_for_s`` stops the run: no further command is
   taken, the report says ``gave_up`` (the service is down; sending the rest would only fail).

With ``batch`` > 1 a worker takes up to ``batch`` commands at once, the next ones in the given
order as long as none is of an order another worker has in flight (several of one order may
go together: the service decides a batch in order), and posts them to ``POST /commands`` in one
request. A 503 or a connection error retries the whole batch (same command ids: what did
commit is answered again); an item that lost a race for its order's seq (409
``ConcurrentCommandError``) is retried on its own as in step 2; every other item's result is
final as in step 3.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import httpx

from scripts.workload.commands import WorkloadCommand

__all__ = ["SendReport", "send_commands", "RETRYABLE_STATUS"]

#: Answers worth retrying with the same command id: the database did not answer.
RETRYABLE_STATUS = frozenset({503})
#: A 409 with this error name lost a race for the order's next seq: retrying decides afresh.
_RACE_LOST = "ConcurrentCommandError"
#: How many refusals keep their reason in the report.
_EXAMPLES = 10


@dataclass
class SendReport:
    """How a run of :func:`send_commands` went (a snapshot while it runs, the totals at the end).

    ``done`` commands were answered for good (or given up) out of ``total``; of them
    ``accepted`` got a 2xx (``replayed``: answered as a retry of a command already committed),
    ``refused`` counts the others by (HTTP status, error name), with the first few reasons in
    ``refusals`` (``"POST /orders/o-1/refund -> 422 InvalidCommandError: ..."``). ``retries``
    counts attempts repeated after a 503, a lost seq race or a connection error; ``gave_up`` is
    1 when a command still failed after the retry bound (the run then stopped early).
    """

    total: int
    done: int = 0
    accepted: int = 0
    replayed: int = 0
    refused: Counter[tuple[int, str]] = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)
    retries: int = 0
    gave_up: int = 0
    elapsed_s: float = 0.0

    @property
    def refused_total(self) -> int:
        """Commands answered with an error for good."""
        return sum(self.refused.values())

    @property
    def commands_per_s(self) -> float:
        """Commands answered per second of the run so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One line: counts and rate."""
        refused = ", ".join(f"{n} x {status} {name}" for (status, name), n in sorted(self.refused.items())) or "none"
        return (
            f"{self.done:,}/{self.total:,} commands in {self.elapsed_s:.1f} s ({self.commands_per_s:,.0f}/s): "
            f"{self.accepted:,} accepted ({self.replayed} as retries), refused: {refused}; {self.retries} retried"
            + (f"; GAVE UP after {self.gave_up} command(s) kept failing" if self.gave_up else "")
        )


class _Dispatch:
    """Step 1: hands out commands in order, never two of one order at once."""

    def __init__(self, commands: Sequence[WorkloadCommand]) -> None:
        self._commands = commands
        self._next = 0
        self._in_flight: set[str] = set()
        self._cond = threading.Condition()
        self.stopped = False

    def take(self) -> WorkloadCommand | None:
        """The next command, once its order has none in flight; None when all are handed out or the run stopped."""
        with self._cond:
            while True:
                if self.stopped or self._next >= len(self._commands):
                    return None
                command = self._commands[self._next]
                if command.order_id not in self._in_flight:
                    self._next += 1
                    self._in_flight.add(command.order_id)
                    return command
                self._cond.wait()

    def take_many(self, limit: int) -> list[WorkloadCommand]:
        """Up to ``limit`` next commands, none of an order another worker has in flight (waits for one); [] when done."""
        with self._cond:
            while True:
                if self.stopped or self._next >= len(self._commands):
                    return []
                taken: list[WorkloadCommand] = []
                mine: set[str] = set()
                while self._next < len(self._commands) and len(taken) < limit:
                    command = self._commands[self._next]
                    if command.order_id in self._in_flight and command.order_id not in mine:
                        break
                    taken.append(command)
                    mine.add(command.order_id)
                    self._next += 1
                if taken:
                    self._in_flight |= mine
                    return taken
                self._cond.wait()

    def answered_many(self, commands: Sequence[WorkloadCommand]) -> None:
        """Every command of a batch is answered for good: the next commands of their orders may go."""
        with self._cond:
            self._in_flight.difference_update(c.order_id for c in commands)
            self._cond.notify_all()

    def answered(self, command: WorkloadCommand) -> None:
        """``command`` is answered for good: the next command of its order may go."""
        with self._cond:
            self._in_flight.discard(command.order_id)
            self._cond.notify_all()

    def stop(self) -> None:
        """Hand out nothing more."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()


def send_commands(
    base_url: str,
    commands: Sequence[WorkloadCommand],
    *,
    workers: int = 8,
    retry_for_s: float = 60.0,
    timeout_s: float = 30.0,
    progress: Callable[[SendReport], None] | None = None,
    progress_interval_s: float = 1.0,
    stop: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
    batch: int = 1,
) -> SendReport:
    """Post ``commands`` to the order service at ``base_url`` (the steps in the module docstring).

    ``progress`` is called every ``progress_interval_s`` with a snapshot of the report (from
    the calling thread). ``stop`` set: no further command is taken; the report counts what was
    answered. ``transport`` replaces the network (tests). ``batch`` > 1: up to that many
    commands a request, to ``POST /commands`` (module docstring).
    """
    report = SendReport(total=len(commands))
    lock = threading.Lock()
    dispatch = _Dispatch(commands)
    halt = threading.Event()  # set on a give-up or the caller's stop: no new command, no more backoff
    started = time.monotonic()

    def record(update: Callable[[SendReport], None]) -> None:
        with lock:
            update(report)

    def refused(command: WorkloadCommand, status: int, error: str, detail: str) -> None:
        def update(r: SendReport) -> None:
            r.done += 1
            r.refused[(status, error)] += 1
            if len(r.refusals) < _EXAMPLES:
                r.refusals.append(f"POST {command.path} -> {status} {error}: {detail}")
        record(update)

    def accepted(replayed: bool) -> None:
        def update(r: SendReport) -> None:
            r.done += 1
            r.accepted += 1
            r.replayed += replayed
        record(update)

    def retrying(commands: Sequence[WorkloadCommand], attempt: Callable[[], str | None]) -> None:
        """Steps 2 and 4: ``attempt()`` until it returns None (answered for good), else why it may be retried."""
        deadline = time.monotonic() + retry_for_s
        backoff_s = 0.05
        while (why := attempt()) is not None:
            if halt.is_set():
                for command in commands:
                    refused(command, 0, "Stopped", f"the run stopped while this command was being retried ({why})")
                return
            if time.monotonic() + backoff_s > deadline:
                # Step 4
                for command in commands:
                    refused(command, 0, "GaveUp", f"still failing after {retry_for_s:.0f} s ({why})")
                record(lambda r: setattr(r, "gave_up", r.gave_up + 1))
                halt.set()
                dispatch.stop()
                return
            record(lambda r: setattr(r, "retries", r.retries + 1))
            halt.wait(backoff_s)  # backoff before a retry (cut short by a stop), not synchronisation
            backoff_s = min(backoff_s * 2, 2.0)

    def post(client: httpx.Client, command: WorkloadCommand) -> None:
        # Steps 2 and 3
        content = json.dumps(command.body(), separators=(",", ":")).encode()

        def attempt() -> str | None:
            try:
                response = client.post(command.path, content=content, headers={"content-type": "application/json"})
            except httpx.TransportError as exc:
                return f"{type(exc).__name__}: {exc}"
            if response.is_success:
                accepted(response.headers.get("Idempotent-Replayed") == "true")
                return None
            error, detail = _error_of(response)
            if response.status_code not in RETRYABLE_STATUS and not (response.status_code == 409 and error == _RACE_LOST):
                refused(command, response.status_code, error, detail)
                return None
            return f"{response.status_code} {error}: {detail}"

        retrying([command], attempt)

    def post_batch(client: httpx.Client, commands: list[WorkloadCommand]) -> None:
        content = json.dumps({"commands": [_batch_item(c) for c in commands]}, separators=(",", ":")).encode()

        def attempt() -> str | None:
            try:
                response = client.post("/commands", content=content, headers={"content-type": "application/json"})
            except httpx.TransportError as exc:
                return f"{type(exc).__name__}: {exc}"
            if response.is_success:
                for command, result in zip(commands, response.json()["results"], strict=True):
                    status = int(result["status"])
                    if 200 <= status < 300:
                        accepted(bool(result.get("replayed")))
                    elif status == 409 and result.get("error") == _RACE_LOST:
                        record(lambda r: setattr(r, "retries", r.retries + 1))
                        post(client, command)  # decided afresh on its own (step 2)
                    else:
                        refused(command, status, str(result.get("error")), str(result.get("detail")))
                return None
            error, detail = _error_of(response)
            if response.status_code not in RETRYABLE_STATUS:
                for command in commands:
                    refused(command, response.status_code, error, detail)
                return None
            return f"{response.status_code} {error}: {detail}"

        retrying(commands, attempt)

    def work() -> None:
        with httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport) as client:
            while batch > 1:
                taken = dispatch.take_many(batch)
                if not taken:
                    return
                try:
                    post_batch(client, taken)
                finally:
                    dispatch.answered_many(taken)
            while True:
                command = dispatch.take()
                if command is None:
                    return
                try:
                    post(client, command)
                finally:
                    dispatch.answered(command)

    threads = [threading.Thread(target=work, name=f"sender-{n}", daemon=True) for n in range(max(1, workers))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=progress_interval_s)
                if stop is not None and stop.is_set():
                    halt.set()
                    dispatch.stop()
                if progress is not None:
                    progress(_snapshot(report, lock, started))
    finally:
        halt.set()
        dispatch.stop()
    final = _snapshot(report, lock, started)
    if progress is not None:
        progress(final)
    return final


def _snapshot(report: SendReport, lock: threading.Lock, started: float) -> SendReport:
    with lock:
        return replace(report, refused=Counter(report.refused), refusals=list(report.refusals), elapsed_s=time.monotonic() - started)


def _batch_item(command: WorkloadCommand) -> dict[str, object]:
    """One item of ``POST /commands``: the command's name, its order and its body (as its own endpoint takes it)."""
    return {"type": type(command.command).__name__, "orderId": command.order_id, "command": command.body()}


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The service's one-line error (``{"error": ..., "detail": ...}``), or the status phrase and the body's start."""
    try:
        body = response.json()
        return str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase.replace(" ", "") or "HTTPError", response.text[:200]
