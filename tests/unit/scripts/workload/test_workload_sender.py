"""The command sender against a fake order service (httpx.MockTransport): order per order, retries, refusals, giving up."""

from __future__ import annotations

import json
import threading
from collections import defaultdict

import httpx

from scripts.workload import WorkloadConfig, generate
from scripts.workload.commands import WorkloadCommand, workload_commands
from scripts.workload.sender import send_commands

COMMANDS: list[WorkloadCommand] = list(workload_commands(generate(WorkloadConfig(seed=3, orders=150, days=7)).records))


class FakeService:
    """Answers 200/201, records what arrived, and notes any two commands of one order in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: list[str] = []  # command ids, in the order they were answered with a success
        self.attempts: dict[str, int] = defaultdict(int)
        self.in_flight: set[str] = set()
        self.overlaps = 0
        self.gate = threading.Event()
        self.gate.set()

    def order_of(self, request: httpx.Request) -> str:
        body = json.loads(request.content)
        return str(body["orderId"]) if request.url.path == "/orders" else request.url.path.split("/")[2]

    def answer(self, request: httpx.Request, body: dict[str, object]) -> httpx.Response:
        return httpx.Response(201 if request.url.path == "/orders" else 200, json={"commandId": body["commandId"]})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        order = self.order_of(request)
        with self.lock:
            self.overlaps += order in self.in_flight
            self.in_flight.add(order)
            self.attempts[body["commandId"]] += 1
            attempt = self.attempts[body["commandId"]]
        try:
            self.gate.wait(1.0)
            response = self.respond(request, body, attempt)
            if response.is_success:
                with self.lock:
                    self.arrived.append(str(body["commandId"]))
            return response
        finally:
            with self.lock:
                self.in_flight.discard(order)

    def respond(self, request: httpx.Request, body: dict[str, object], attempt: int) -> httpx.Response:
        return self.answer(request, body)


def test_one_worker_sends_in_the_order_given() -> None:
    """Scenario: one worker. We expect the service to see the commands exactly in the order given, all accepted."""
    service = FakeService()
    report = send_commands("http://svc", COMMANDS, workers=1, transport=httpx.MockTransport(service))
    assert service.arrived == [c.command.command_id for c in COMMANDS]
    assert (report.done, report.accepted, report.refused_total, report.retries, report.gave_up) == (len(COMMANDS), len(COMMANDS), 0, 0, 0)


def test_many_workers_keep_each_orders_commands_in_seq_order_and_one_at_a_time() -> None:
    """Scenario: eight workers, every command answered slowly enough to overlap. We expect no two commands of one order in flight at once,
    each order's commands arriving in seq order, and the overall order within the workers' window of the order given."""
    service = FakeService()
    report = send_commands("http://svc", COMMANDS, workers=8, transport=httpx.MockTransport(service))
    assert report.accepted == len(COMMANDS) and service.overlaps == 0
    position = {c.command.command_id: n for n, c in enumerate(COMMANDS)}
    seqs: dict[str, list[int]] = defaultdict(list)
    for command_id in service.arrived:
        command = COMMANDS[position[command_id]]
        seqs[command.order_id].append(command.seq)
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())
    # A command is handed out only after every earlier one was; at most 8 are in flight, so none arrives more than 8 places early.
    assert all(position[command_id] <= n + 8 for n, command_id in enumerate(service.arrived))


class Flaky(FakeService):
    """The first attempt of every fifth command is a 503, of every seventh a dropped connection; a refund is refused."""

    def respond(self, request: httpx.Request, body: dict[str, object], attempt: int) -> httpx.Response:
        n = int.from_bytes(str(body["commandId"]).encode()[-2:], "big")
        if attempt == 1 and n % 5 == 0:
            return httpx.Response(503, json={"error": "EventStoreUnavailableError", "detail": "locked"})
        if attempt == 1 and n % 7 == 0:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path.endswith("/refund"):
            return httpx.Response(422, json={"error": "InvalidCommandError", "detail": "refund too large"})
        return self.answer(request, body)


def test_503s_and_connection_errors_are_retried_and_refusals_counted_with_their_reason() -> None:
    """Scenario: first attempts failing with 503 or a dropped connection, refunds refused with a 422. We expect every other command accepted
    once, each failed attempt counted as a retry, each refund counted as refused with its reason, nothing given up."""
    service = Flaky()
    report = send_commands("http://svc", COMMANDS, workers=4, transport=httpx.MockTransport(service))
    refunds = sum(1 for c in COMMANDS if c.event_type == "RefundIssued")
    failed_first = sum(1 for n in service.attempts.values() if n > 1)
    assert refunds > 0 and failed_first > 0
    assert report.refused == {(422, "InvalidCommandError"): refunds}
    assert report.accepted == len(COMMANDS) - refunds and report.retries == failed_first and report.gave_up == 0
    assert report.refusals[0].endswith("-> 422 InvalidCommandError: refund too large")
    assert sorted(service.arrived) == sorted(c.command.command_id for c in COMMANDS if c.event_type != "RefundIssued")


def test_a_service_that_stays_down_stops_the_run() -> None:
    """Scenario: every answer a 503. We expect the run to give up after the retry bound, not to try the rest of the commands."""

    class Down(FakeService):
        def respond(self, request: httpx.Request, body: dict[str, object], attempt: int) -> httpx.Response:
            return httpx.Response(503, json={"error": "EventStoreUnavailableError", "detail": "down"})

    service = Down()
    report = send_commands("http://svc", COMMANDS, workers=2, retry_for_s=0.3, transport=httpx.MockTransport(service))
    assert report.gave_up == 1 and report.accepted == 0 and report.done < 10
    assert len(service.attempts) <= 4  # the commands in flight when the first gave up, at most one more per worker


def test_a_stop_from_the_caller_hands_out_nothing_more() -> None:
    """Scenario: the caller's stop set while the first commands are held at the service. We expect the run to end with only those answered."""
    service = FakeService()
    service.gate.clear()
    stop = threading.Event()
    stop.set()
    report = send_commands("http://svc", COMMANDS, workers=2, stop=stop, progress_interval_s=0.05, transport=httpx.MockTransport(service))
    assert report.done <= 2 and len(service.attempts) <= 2


class FakeBatchService:
    """POST /commands: answers each item 200/201 in order (one item lost a seq race once), notes orders of two batches in flight
    at once; single endpoints answer 200 (the lost race's retry)."""

    def __init__(self, race_loser: str) -> None:
        self.lock = threading.Lock()
        self.arrived: list[str] = []
        self.batches: list[int] = []
        self.in_flight: set[str] = set()
        self.overlaps = 0
        self.race_loser = race_loser
        self.raced = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path != "/commands":
            with self.lock:
                self.arrived.append(str(body["commandId"]))
            return httpx.Response(200, json={"commandId": body["commandId"]})
        items = body["commands"]
        orders = {item["orderId"] for item in items}
        with self.lock:
            self.overlaps += bool(orders & self.in_flight)
            self.in_flight |= orders
            self.batches.append(len(items))
        try:
            results = []
            for item in items:
                command_id = item["command"]["commandId"]
                with self.lock:
                    lost = command_id == self.race_loser and not self.raced
                    self.raced |= lost
                    if not lost:
                        self.arrived.append(command_id)
                results.append({"status": 409, "error": "ConcurrentCommandError", "detail": "won seq"} if lost
                               else {"status": 201 if item["type"] == "PlaceOrder" else 200, "replayed": False, "answer": {}})
            return httpx.Response(200, json={"results": results})
        finally:
            with self.lock:
                self.in_flight -= orders


def test_batches_keep_each_orders_commands_in_seq_order_and_retry_a_lost_race_alone() -> None:
    """Scenario: four workers sending batches of up to 50 to POST /commands; one command loses a seq race once. We expect every
    command accepted once, no order in two batches in flight at once, each order's commands in seq order, batches larger
    than one, and the lost race retried on its own endpoint."""
    loser = COMMANDS[len(COMMANDS) // 2].command.command_id
    service = FakeBatchService(race_loser=loser)
    report = send_commands("http://svc", COMMANDS, workers=4, batch=50, transport=httpx.MockTransport(service))
    assert (report.accepted, report.refused_total, report.retries) == (len(COMMANDS), 0, 1)
    assert service.overlaps == 0 and max(service.batches) > 1 and sum(service.batches) == len(COMMANDS)
    assert sorted(service.arrived) == sorted(c.command.command_id for c in COMMANDS)
    position = {c.command.command_id: n for n, c in enumerate(COMMANDS)}
    seqs: dict[str, list[int]] = defaultdict(list)
    for command_id in service.arrived:
        command = COMMANDS[position[command_id]]
        seqs[command.order_id].append(command.seq)
    # Every order but the loser's in seq order (the fake accepts the loser's later commands of the same batch, which a real
    # service would decide without it; the sender's part is to retry the loser alone, after its batch).
    loser_order = COMMANDS[position[loser]].order_id
    assert all(s == list(range(1, len(s) + 1)) for order, s in seqs.items() if order != loser_order)
