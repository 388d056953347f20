"""The HTTP API under an OpenAPI-driven fuzzer (schemathesis): the real app over a real RocksDB store, no mocks.

Schemathesis reads the app's own /openapi.json and sends, for every operation, the
schema's examples, boundary cases (coverage phase) and random valid and invalid requests
(fuzzing phase). Every answer must be a status the document declares, never a 5xx but the
replica's documented 503 (min_position not reached), with a declared content type and a body
that validates against the declared schema; an invalid request must be refused with a 4xx.
The parameters' custom formats (rewind-timestamp, -position, -key, -index) get strategies
aimed at the edges: times around years 1 and 9999, integers past Kafka's types, floats, deep
JSON, keys around 65,535 bytes. The budget is small (40 examples an operation, the whole test
about 10-20 s); a failure prints the request to reproduce it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from pipelines.projections import VIEW_SPECS
from state.http_api import create_app
from state.memory_store import MemoryStore
from state.query import QueryService
from state.query_args import MAX_KEY_BYTES, MAX_TIME_MS, MIN_TIME_MS
from state.replica import ReplicaStatus
from state.rocks_store import ReadOnlyStoreView, open_store
from tests.unit.state.state_builders import ORDER_TOPIC, counter_update, order_update

T0 = 1795273200000  # 2026-11-21T15:00:00Z
#: Valid min_position waits are cut to this, so an unreachable one costs milliseconds, not up to 60 s.
WAIT_CAP_MS = 5
EXAMPLES_PER_OPERATION = 40


def no_server_error(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No 5xx but the documented one: a 503 ReplicaBehindError for a min_position the replica did not reach in time.

    (schemathesis' not_a_server_error counts that 503 too; allowing every 503 instead would let a
    503 for the caller's own bad input through, which is what this test is for.)
    """
    if response.status_code < 500:
        return
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):  # not JSON, or not an object
        error = None
    assert response.status_code == 503 and error == "ReplicaBehindError", f"{response.status_code}: {response.content[:300]!r}"


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection]


def _timestamps() -> st.SearchStrategy[str]:
    """What callers send as ``as_of``: epoch ms and ISO times mostly near the ends of the supported range, and junk."""
    near = 2**20
    epoch_ms = st.one_of(
        st.integers(MIN_TIME_MS - near, MIN_TIME_MS - 1), st.integers(MAX_TIME_MS + 1, MAX_TIME_MS + near),
        st.sampled_from([MIN_TIME_MS, MAX_TIME_MS, -(2**63) - 1, -(2**63), 2**63 - 1, 2**63, 10**30]), st.integers(-(2**70), 2**70),
    )
    offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))
    ends = st.one_of(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 2)),
        st.datetimes(min_value=datetime(9999, 12, 31), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
        st.datetimes(),
    )
    return st.one_of(
        epoch_ms.map(str), st.builds(lambda moment, zone: moment.replace(tzinfo=zone).isoformat(), ends, offsets), st.text(max_size=40)
    )


def _positions() -> st.SearchStrategy[str]:
    """What callers send as ``min_position``: both forms, numbers of any size, floats, bad topics, deep nesting, junk."""
    numbers = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64]))
    topics = st.one_of(st.sampled_from([ORDER_TOPIC, "orders", "view.customer-summary"]), st.text(max_size=12))
    compact = st.lists(st.tuples(topics, numbers, numbers), min_size=1, max_size=3).map(
        lambda items: ",".join(f"{t}:{p}:{o}" for t, p, o in items)
    )
    leaves = st.one_of(numbers, st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1e400", "-0", "1.5", "true", "null", '"7"']))
    as_json = st.dictionaries(topics, st.dictionaries(numbers.map(str), leaves.map(str), max_size=3), min_size=1, max_size=2).map(
        lambda d: "{" + ",".join(f"{json.dumps(t)}: {{" + ",".join(f"{json.dumps(p)}: {o}" for p, o in parts.items()) + "}" for t, parts in d.items()) + "}"
    )
    # Past the interpreter's recursion limit (1,000) is what matters; a few levels are covered by the other forms.
    deep = st.sampled_from([1_500, 20_000]).flatmap(lambda n: st.sampled_from(['{"a":' * n + "1" + "}" * n, '{"a":' + "[" * n + "]" * n + "}"]))
    reached = st.sampled_from(["", f"{ORDER_TOPIC}:0:4", "orders:0:1", '{"view.customer-summary": {"0": 1}}'])
    return st.one_of(reached, compact, as_json, deep, st.text(max_size=40))


def _keys() -> st.SearchStrategy[str]:
    """Keys and index values: the stored ones, ones with slashes, dots and percent signs, ones at and over the byte limit."""
    near_limit = st.sampled_from([MAX_KEY_BYTES - 1, MAX_KEY_BYTES, MAX_KEY_BYTES + 1, 70_000])
    long = st.builds(lambda n, ch: ch * (n // len(ch.encode())), near_limit, st.sampled_from(["k", "é", "€", "😀", "/"]))
    common = st.one_of(st.sampled_from(["o1", "a/history", "a%2Fhistory", "ünï", "c1", "..", "%", "PLACED", "a/b/c"]), st.text(min_size=1, max_size=30))
    # One in ten: a long key fails before anything else is looked at, so it would hide the other arguments.
    return st.integers(0, 9).flatmap(lambda i: long if i == 0 else common)


def _indexes() -> st.SearchStrategy[str]:
    """Index names, the fields they read, the name=value form, and unknown ones."""
    names = sorted({n for spec in VIEW_SPECS.values() for index in spec.indexes for n in (index.name, index.field)})
    return st.one_of(st.sampled_from(names), st.sampled_from(names).map(lambda n: n + "=PLACED"), st.text(max_size=20))


# Registered once for the session: nothing else names these formats.
schemathesis.openapi.format("rewind-timestamp", _timestamps())
schemathesis.openapi.format("rewind-position", _positions())
schemathesis.openapi.format("rewind-key", _keys())
schemathesis.openapi.format("rewind-index", _indexes())


def _document() -> dict[str, Any]:
    """The app's OpenAPI document. It does not depend on the store, so an empty in-memory one serves to build it at collection."""
    return create_app(QueryService(MemoryStore())).openapi()


# Built at collection (schemathesis parametrizes by operation); the requests go to the fixture's app.
# (schemathesis.pytest.from_fixture would defer this, but 4.32.5 fails under pytest 9: it sets Function._nodeid.)
schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES_PER_OPERATION, database="none")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app over a RocksDB store with a few rows (a key with a slash, a non-ASCII key, two versions), and a running replica's status.

    Module scope: every request only reads, so all the generated inputs can share it.
    """
    store = open_store(tmp_path_factory.mktemp("fuzz") / "replica")
    store.apply(
        [order_update("o1", 1, T0, "PLACED", offset=0), order_update("o1", 2, T0 + 60_000, "PAYMENT_AUTHORIZED", offset=1),
         order_update("a/history", 1, T0 + 1000, "PLACED", offset=2), order_update("ünï", 1, T0 + 2000, "SHIPPED", offset=3)],
        position={ORDER_TOPIC: {0: 4}},
    )
    store.apply([counter_update("customer-summary", "c1", "o1", 1, T0, {"lifetimeValueMinor": 500}, offset=0)],
                position={"view.customer-summary": {0: 1}})
    status = ReplicaStatus(running=True, error=None, records=5, malformed=0, last_malformed=None, assigned={ORDER_TOPIC: [0]},
                           lag={ORDER_TOPIC: {0: 0}})
    yield create_app(QueryService(ReadOnlyStoreView(store), default_wait_ms=WAIT_CAP_MS), replica_status=lambda: status)
    store.close()


def test_the_fuzzed_document_is_the_apps(app: FastAPI) -> None:
    """Scenario: the fuzzer's document comes from an app over an empty store. We expect it equal to what the real app serves."""
    assert TestClient(app).get("/openapi.json").json() == _document()


@schema.parametrize()
def test_no_input_gets_a_5xx_or_an_undocumented_answer(case: schemathesis.Case, app: FastAPI) -> None:
    """Scenario: generated valid and invalid requests to every endpoint. We expect no 5xx, and every answer as documented."""
    wait_ms = case.query.get("wait_ms") if isinstance(case.query, dict) else None
    if isinstance(wait_ms, int) and not isinstance(wait_ms, bool) and WAIT_CAP_MS < wait_ms <= 60_000:
        case.query["wait_ms"] = WAIT_CAP_MS  # still valid: a negative case stays negative
    case.call_and_validate(app=app, checks=CHECKS)
