"""One log holding every schema version (v1, v2, v3) in both framings (single-object and Confluent), on the real
broker and a real Apicurio registry: live and replay both fold it to the oracle's views, and the records no
schema or upcaster can read are dead letters that say why.

The oracle is the workload's model, which never decodes a byte: the old versions are written by the workload
as an old producer would (from the order's facts), so the upcasters are checked against facts they did not make.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.dlq import headers_to_dict
from pipelines.topics import view_topic
from schemas.codec import CONFLUENT_MAGIC, EventCodec
from schemas.confluent import ConfluentSchemas
from schemas.errors import RegistryUnavailableError
from schemas.fast_decode import event_decoder
from schemas.registry import load_registry
from scripts.workload import Emitted, Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_order_status, expected_payments_daily, mismatched_keys, subset
from scripts.workload.framing import confluent_framed, register_all
from state.replay.engine import ReplayRequest, run_replay
from state.rocks_store import open_store
from tests.integration.registry_support import RegistryCli, running_registry
from tests.integration.support import PipelineProcess, group_caught_up, isolated_settings, latest_rows, read_topic, wait_until

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("REWIND_TEST_MIXED_REGISTRY_PORT", "18481"))
VIEWS = ("order-status", "payments-daily")
#: A schema id this test's fresh registry has not handed out (ids count up from 1).
UNKNOWN_ID = 987_654
CONFLUENT_SHARE = 0.5


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryCli]:
    """A registry of this module's own (fresh database, level BACKWARD_TRANSITIVE); stopped at the end."""
    with running_registry(tmp_path_factory.mktemp("mixed-registry") / "registry", PORT) as cli:
        yield cli


def _bad_records(headers: dict[bytes, bytes], template: Emitted) -> list[Emitted]:
    """Records outside the oracle, each on a key of its own: an unknown Confluent schema id, and an OrderPlaced v2
    whose currency the v2 -> v3 upcaster refuses (once per framing)."""
    codec = EventCodec()
    out = [template._replace(key=b"ord-x-unknown-id", value=bytes([CONFLUENT_MAGIC]) + UNKNOWN_ID.to_bytes(4, "big") + template.value[10:],
                             poison=None)]
    for framing in ("single-object", "confluent"):
        order_id = f"ord-x-bad-currency-{framing}"
        event = {
            "envelope": {"eventId": str(uuid.uuid4()), "eventType": "OrderPlaced", "schemaVersion": 2, "orderId": order_id, "seq": 1,
                         "occurredAt": template.timestamp_ms, "correlationId": "c", "causationId": "c"},
            "customerId": "cust-x", "items": [{"sku": "sku-0001", "quantity": 1, "unitPriceMinor": 100}],
            "totalMinor": 100, "currency": "eur", "salesChannel": "web",
        }
        value = codec.encode(event)
        if framing == "confluent":
            value = headers[value[2:10]] + value[10:]
        out.append(template._replace(key=order_id.encode(), value=value, order_id=order_id, poison=None))
    return out


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, registry: RegistryCli, tmp_path_factory: pytest.TempPathFactory, live_engine: str) -> dict[str, Any]:
    """The mixed log produced, its oracle written, and both views run live until they equal the oracle (then SIGTERM)."""
    tmp = tmp_path_factory.mktemp("mixed")
    name = f"t-mixed-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(kafka_bootstrap, name, tmp, schema_registry_url=registry.url, engine=live_engine)
    workload = generate(WorkloadConfig(seed=23, orders=1200, days=7, poison_rate=0.02, old_version_rate=0.5))
    local = load_registry()
    headers = register_all(ConfluentSchemas(registry.url, local, timeout_s=10), local)
    records = confluent_framed(workload.records, share=CONFLUENT_SHARE, seed=23, headers=headers)
    bad = _bad_records(headers, next(r for r in workload.records if r.poison is None))
    produce_workload(settings, records + bad, progress=False)
    oracle_path = tmp / "oracle.sqlite"
    write_oracle(workload, oracle_path, topic=settings.orders_topic)
    with Oracle.open(oracle_path) as oracle:
        expected = {"order-status": expected_order_status(oracle), "payments-daily": expected_payments_daily(oracle)}
    bootstrap = settings.bootstrap()
    procs = {v: PipelineProcess.start(settings, v, group=f"{name}-{v}", state_dir=tmp / v, log_dir=tmp / "logs") for v in VIEWS}
    try:
        for view in VIEWS:

            def done(view: str = view) -> bool:
                if not procs[view].alive():
                    return True
                if not group_caught_up(bootstrap, f"{name}-{view}", settings.orders_topic):
                    return False
                return not mismatched_keys(latest_rows(bootstrap, view_topic(view, prefix=settings.view_topic_prefix)), expected[view])

            wait_until(done, timeout_s=300, what=f"{view} to consume the mixed log and match the oracle", interval_s=1)
            assert procs[view].alive(), procs[view].output_tail()
        stats = {v: procs[v].terminate() for v in VIEWS}
    finally:
        for proc in procs.values():
            if proc.alive():
                proc.kill9()
    return {"settings": settings, "tmp": tmp, "expected": expected, "records": records, "stats": stats}


def test_the_log_holds_every_version_in_both_framings(world: dict[str, Any]) -> None:
    """Scenario: the records produced. We expect OrderPlaced v1, v2, v3 and PaymentAuthorized v1, v2, each in both framings."""
    codec = EventCodec(load_registry(), schema_ids=ConfluentSchemas(world["settings"].schema_registry_url, load_registry()))
    seen: Counter[tuple[str, int, str]] = Counter()
    for record in world["records"]:
        if record.poison is not None:
            continue
        schema, _ = codec.decode_written(record.value)
        seen[(schema.event_type, schema.version, "confluent" if record.value[0] == CONFLUENT_MAGIC else "single-object")] += 1
    for event_type, versions in (("OrderPlaced", (1, 2, 3)), ("PaymentAuthorized", (1, 2))):
        for version in versions:
            for framing in ("single-object", "confluent"):
                assert seen[(event_type, version, framing)] > 0, (event_type, version, framing)


@pytest.mark.parametrize("view", VIEWS)
def test_live_views_equal_the_oracle(world: dict[str, Any], view: str) -> None:
    """Scenario: the live pipeline over the mixed log. We expect every row equal to the oracle's, and no other key."""
    settings = world["settings"]
    actual = latest_rows(settings.bootstrap(), view_topic(view, prefix=settings.view_topic_prefix))
    expected = world["expected"][view]
    assert set(actual) == set(expected)
    bad = mismatched_keys(actual, expected)
    assert not bad, [(k, subset(actual[k]["row"], expected[k]), expected[k]) for k in bad[:3]]


@pytest.mark.parametrize("view", VIEWS)
def test_replay_from_zero_equals_the_oracle(world: dict[str, Any], view: str) -> None:
    """Scenario: a replay from offset zero over the mixed log, reading Confluent ids through the registry.
    We expect every oracle row, field for field."""
    settings = world["settings"]
    result = run_replay(ReplayRequest(view=view, bootstrap=settings.bootstrap(), topic=settings.orders_topic,
                                      into=world["tmp"] / f"replay-{view}", workers=2, schema_registry_url=settings.schema_registry_url))
    expected = world["expected"][view]
    store = open_store(result.output / "view", read_only=True)
    try:
        replayed = {k: {"row": dict(r.row)} for k in expected if (r := store.get(view, k)) is not None}
    finally:
        store.close()
    assert set(replayed) == set(expected)
    bad = mismatched_keys(replayed, expected)
    assert not bad, [(k, subset(replayed[k]["row"], expected[k]), expected[k]) for k in bad[:3]]


def test_unreadable_records_are_dead_letters_that_say_why(world: dict[str, Any]) -> None:
    """Scenario: an unknown Confluent schema id, and an OrderPlaced v2 with currency "eur" in both framings.
    We expect, from each live pipeline, UnknownSchemaError naming the id, and UpcastError naming the field currency."""
    settings = world["settings"]
    letters: dict[tuple[str, str], dict[str, str]] = {}
    for message in read_topic(settings.bootstrap(), settings.dlq_topic):
        key = (message.key() or b"").decode()
        if key.startswith("ord-x-"):
            h = headers_to_dict(message.headers())
            letters[(h["rewind.pipeline"], key)] = h
    for view in VIEWS:
        mine = {key: h for (pipeline, key), h in letters.items() if pipeline == view}
        unknown = mine["ord-x-unknown-id"]
        assert unknown["rewind.reason.class"] == "UnknownSchemaError"
        assert f"schema id {UNKNOWN_ID}" in unknown["rewind.reason.message"]
        for framing in ("single-object", "confluent"):
            refused = mine[f"ord-x-bad-currency-{framing}"]
            assert refused["rewind.reason.class"] == "UpcastError"
            assert "OrderPlaced v2 -> v3" in refused["rewind.reason.message"] and "field currency" in refused["rewind.reason.message"]


def test_a_registry_that_is_down_is_a_clear_error_in_bounded_time(world: dict[str, Any], tmp_path: Path) -> None:
    """Scenario: a Confluent-framed record whose id is not cached, the registry URL a closed port.
    We expect RegistryUnavailableError naming the URL within a few timeouts, not a hang (and not a dead letter)."""
    framed = next(r.value for r in world["records"] if r.value[0] == CONFLUENT_MAGIC)
    decode = event_decoder("http://127.0.0.1:1/apis/ccompat/v7", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="127.0.0.1:1"):
        decode(framed)
    assert time.monotonic() - started < 5.0


def test_a_live_pipeline_stops_on_a_registry_that_is_down_and_skips_nothing(world: dict[str, Any], tmp_path: Path) -> None:
    """Scenario: order-status started on the mixed log with the registry URL a closed port (a Confluent-framed
    record comes within its first records). We expect it to exit non-zero within a bounded time with one line
    naming the registry, having committed no offset past the records it could not read."""
    settings = world["settings"].model_copy(update={"schema_registry_url": "http://127.0.0.1:1/apis/ccompat/v7"})
    group = f"{settings.orders_topic}-registry-down"
    proc = PipelineProcess.start(settings, "order-status", group=group, state_dir=tmp_path / "state", log_dir=tmp_path / "logs")
    try:
        wait_until(lambda: not proc.alive(), timeout_s=120, what="the pipeline to stop on the unreachable registry", interval_s=0.5)
    finally:
        if proc.alive():
            proc.kill9()
    assert proc.proc.returncode != 0
    assert "127.0.0.1:1" in proc.output_tail() and "unreachable" in proc.output_tail()
    records = len(world["records"]) + 3
    from tests.integration.support import committed_total

    assert committed_total(settings.bootstrap(), group, settings.orders_topic) < records
