"""`rewind dlq list|show` and GET /dlq on `rewind serve`, against letters a real pipeline wrote for a poisoned workload.

One small poisoned workload goes through a real `rewind run order-status` (the batch engine, exactly-once)
while `rewind serve` runs; the CLI runs as a subprocess, the API is asked over HTTP. Expected letters
come from the workload's oracle (which records were poison, of which kind, for which order) and from
the orders topic read back on its own (the record each letter says it came from), never from the reader.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pipelines.settings import RewindSettings
from pipelines.topics import admin_client
from scripts.workload import Emitted, Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import DLQ_REASONS, expected_dead_letters
from state.http_api import create_app
from state.http_dlq import DlqList, LetterDetail
from state.memory_store import MemoryStore
from state.query import QueryService
from state.replica import ReplicaStatus
from tests.integration.support import PipelineProcess, group_caught_up, isolated_settings, read_topic, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VIEW = "order-status"
#: Reason classes that are not one poison record's own: parking (a later event of a poisoned order) and late windows.
NOT_OWN = {"Parked", "LateEvent"}


@dataclass
class World:
    """What the fixture ran: settings, the oracle's poison, the workload's poison records, the orders topic, a serve URL."""

    settings: RewindSettings
    expected: Counter[tuple[str, str]]
    poison_records: dict[tuple[str, str], list[Emitted]]
    orders: dict[tuple[int, int], tuple[bytes | None, bytes | None]]
    url: str
    env: dict[str, str]
    #: Commands that must fail, run alongside the fixtures' own (name -> what it did).
    errors: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.cli", "dlq", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A poisoned workload folded by one real order-status pipeline until its group has committed everything; `rewind serve` alongside."""
    name = f"t-dlq-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("dlq")
    settings = isolated_settings(kafka_bootstrap, name, tmp, commit_interval_s=0.5)
    workload = generate(WorkloadConfig(seed=11, orders=60, days=1, poison_rate=0.08))
    produce_workload(settings, workload, progress=False)
    write_oracle(workload, tmp / "oracle.sqlite", topic=settings.orders_topic)
    with Oracle.open(tmp / "oracle.sqlite") as oracle:
        expected = expected_dead_letters(oracle)
    poison_records: dict[tuple[str, str], list[Emitted]] = {}
    for record in workload.records:
        if record.poison is not None:
            poison_records.setdefault((record.order_id, record.poison.kind), []).append(record)
    env = {k: v for k, v in os.environ.items() if k != "REWIND_SCHEMA_REGISTRY_URL"}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REWIND_DLQ_TOPIC": settings.dlq_topic, "PYTHONUNBUFFERED": "1"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "serve", "--port", str(port), "--replica-dir", str(tmp / "replica"),
         "--view-topic-prefix", settings.view_topic_prefix],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    group = f"{name}-{VIEW}"
    pipeline = PipelineProcess.start(settings, VIEW, group=group, state_dir=tmp / "state", log_dir=tmp / "logs")
    try:
        wait_until(lambda: group_caught_up(kafka_bootstrap, group, settings.orders_topic) or not pipeline.alive(),
                   timeout_s=120, what="the pipeline to commit every orders record", interval_s=0.3)
        assert pipeline.alive(), pipeline.output_tail()
        pipeline.terminate()
        orders = {(m.partition() or 0, m.offset() or 0): (m.key(), m.value()) for m in read_topic(kafka_bootstrap, settings.orders_topic)}
        url = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(serving, timeout_s=60, what="rewind serve to answer")
        yield World(settings, expected, poison_records, orders, url, env)
    finally:
        if pipeline.alive():
            pipeline.kill9()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()


#: Letter ids no letter has: past the end of partition 0 (the command must say so, not hang or list nothing).
MISSING_ID = "0:999999999"


@pytest.fixture(scope="module")
def listed(world: World) -> list[dict[str, Any]]:
    """`rewind dlq list --json --pipeline order-status`, one dict a line; the summary line checked on the way.

    `dlq list` of a topic that does not exist runs alongside (each command spends about a second importing);
    test_unknown_letter_and_topic_are_one_line_errors checks it.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        run = pool.submit(_cli, world.env, "list", "--json", "--pipeline", VIEW)
        world.errors["list-unknown-topic"] = pool.submit(_cli, world.env, "list", "--dlq-topic", f"t-dlq-none-{uuid.uuid4().hex[:8]}").result()
        done = run.result()
    assert done.returncode == 0, done.stderr
    letters = [json.loads(line) for line in done.stdout.splitlines()]
    assert f"{len(letters)} letters in {world.settings.dlq_topic}" in done.stderr, done.stderr
    return letters


@pytest.fixture(scope="module")
def shown(world: World, listed: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], subprocess.CompletedProcess[str]]]:
    """`dlq show ID --json` of the first listed letter of impossible_transition and of one unreadable kind, side by side
    (with `dlq show` of an id no letter has, for test_unknown_letter_and_topic_are_one_line_errors)."""
    picked: dict[str, dict[str, Any]] = {}
    for letter in listed:
        kind = _kind(letter["reason_class"])
        if kind == "impossible_transition" or (kind is not None and kind != "impossible_transition" and "unreadable" not in picked):
            picked.setdefault("unreadable" if kind != "impossible_transition" else kind, letter)
    assert picked, "no poison letter listed"
    with ThreadPoolExecutor(max_workers=len(picked) + 1) as pool:
        runs = {kind: pool.submit(_cli, world.env, "show", letter["id"], "--json") for kind, letter in picked.items()}
        world.errors["show-missing"] = pool.submit(_cli, world.env, "show", MISSING_ID).result()
        return {kind: (picked[kind], run.result()) for kind, run in runs.items()}


def _kind(reason_class: str) -> str | None:
    return next((kind for kind, reasons in DLQ_REASONS.items() if reason_class in reasons), None)


def test_list_json_is_the_oracles_poison(world: World, listed: list[dict[str, Any]]) -> None:
    """Scenario: a poisoned workload through order-status. We expect `dlq list --json` to hold each non-duplicate poison
    record of the oracle, by order and kind, each naming the orders record it came from (same key), and nothing else
    (a letter with a reason of its own is poison; a parked letter belongs to a poisoned order)."""
    assert world.expected, "the workload has no poison: the test would prove nothing"
    # A reason class of no poison kind becomes "None", which the oracle never expects.
    own: Counter[tuple[str, str]] = Counter((letter["order_id"], str(_kind(letter["reason_class"])))
                                            for letter in listed if letter["reason_class"] not in NOT_OWN)
    poisoned_orders = {order for order, _ in world.expected}
    assert own <= world.expected, own - world.expected
    # A poison record of an order already dead-lettered may be parked behind the first instead of getting its own letter.
    parked_orders = {letter["order_id"] for letter in listed if letter["reason_class"] == "Parked"}
    assert {order for order, _ in world.expected - own} <= parked_orders, world.expected - own
    assert parked_orders <= poisoned_orders
    for letter in listed:
        assert letter["pipeline"] == VIEW and letter["headers"]["rewind.pipeline"] == VIEW
        source = letter["source"]
        assert source["topic"] == world.settings.orders_topic
        key, _ = world.orders[(source["partition"], source["offset"])]
        assert letter["key"] == (key or b"").decode()
        assert letter["id"] == f"{letter['partition']}:{letter['offset']}"
        assert letter["dead_lettered_at_ms"] > 0 and letter["reason"]
    assert len({letter["id"] for letter in listed}) == len(listed)


def test_show_decodes_the_value_or_shows_its_bytes(world: World, shown: dict[str, tuple[dict[str, Any], Any]]) -> None:
    """Scenario: `dlq show ID --json` of an impossible transition and of an unreadable record. We expect the first's event
    decoded (the poison record's eventType and seq), the second's first bytes in hex (the orders record's) and the codec's error."""
    assert set(shown) == {"impossible_transition", "unreadable"}, "the workload lacks a poison kind: change its seed"
    for kind, (letter, done) in shown.items():
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        LetterDetail.model_validate(body)
        assert body["id"] == letter["id"] and body["headers"] == letter["headers"]
        _, value = world.orders[(letter["source"]["partition"], letter["source"]["offset"])]
        assert body["value_bytes"] == len(value or b"")
        if kind == "impossible_transition":
            records = world.poison_records[(letter["order_id"], kind)]
            envelope = body["event"]["envelope"]
            assert envelope["orderId"] == letter["order_id"]
            assert (envelope["eventType"], envelope["seq"]) in {(r.event_type, r.seq) for r in records}
            assert body["decode_error"] is None and body["value_hex"] is None
        else:
            assert body["event"] is None and body["decode_error"]
            assert body["value_hex"] == (value or b"")[:64].hex()


def test_get_dlq_over_http_answers_as_the_cli(world: World, listed: list[dict[str, Any]]) -> None:
    """Scenario: GET /dlq and /dlq/{id} on `rewind serve`. We expect the CLI's letters, the counts by reason, the filters
    applied, one letter in full, and one-line 4xx for an unknown or malformed id."""
    body = httpx.get(f"{world.url}/dlq", params={"pipeline": VIEW, "limit": 10_000}, timeout=30).json()
    DlqList.model_validate(body)
    assert body["letters"] == listed
    assert body["count"] == body["shown"] == len(listed)
    assert body["by_reason"] == dict(Counter(letter["reason_class"] for letter in listed))
    first = listed[0]
    one = httpx.get(f"{world.url}/dlq", params={"reason": first["reason_class"], "order": first["order_id"], "limit": 1}, timeout=30).json()
    assert one["shown"] == 1 and one["letters"][0]["order_id"] == first["order_id"]
    assert one["count"] == sum(1 for letter in listed if (letter["reason_class"], letter["order_id"]) == (first["reason_class"], first["order_id"]))
    detail = httpx.get(f"{world.url}/dlq/{first['id']}", timeout=30)
    assert detail.status_code == 200 and {k: detail.json()[k] for k in first} == first
    missing = httpx.get(f"{world.url}/dlq/0:999999999", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] == "LetterNotFoundError"
    malformed = httpx.get(f"{world.url}/dlq/zero", timeout=30)
    assert malformed.status_code == 422 and set(malformed.json()) == {"error", "detail"}


def test_unknown_letter_and_topic_are_one_line_errors(world: World, shown: Any) -> None:
    """Scenario: `dlq show` of an id past the end, `dlq list` of a topic that does not exist (run by the fixtures).
    We expect exit 1 and one line saying so."""
    for name, expected in (("show-missing", f"no dead letter {MISSING_ID}"), ("list-unknown-topic", "does not exist")):
        done = world.errors[name]
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr


def test_get_dlq_of_a_topic_that_does_not_exist_is_a_404_and_creates_nothing(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: the API's DLQ topic (REWIND_DLQ_TOPIC) does not exist on the replica's broker. We expect a one-line 404
    DlqTopicNotFoundError naming it, and the topic still absent afterwards (reading never creates it)."""
    topic = f"t-dlq-none-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REWIND_DLQ_TOPIC", topic)
    status = ReplicaStatus(running=True, error=None, records=0, malformed=0, last_malformed=None, assigned={}, bootstrap=kafka_bootstrap)
    client = TestClient(create_app(QueryService(MemoryStore()), replica_status=lambda: status))
    for path in ("/dlq", "/dlq/0:0"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"] == "DlqTopicNotFoundError", response.text
        assert topic in response.json()["detail"] and set(response.json()) == {"error", "detail"}
    assert topic not in admin_client(kafka_bootstrap).list_topics(timeout=10).topics
