"""Bad input to the HTTP API (issue 12, point 5): each one a 4xx with a one-line reason, never a 500, never a 503, never a wrong 200.

Each test names what the API answered before the fix. The app runs over a real RocksDB
store; the longest-key test goes through the real uvicorn server `rewind serve` configures.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from state.errors import InvalidPositionError, InvalidTimestampError, QueryError
from state.http_api import create_app
from state.keys import lp
from state.query import QueryService
from state.query_args import MAX_KEY_BYTES, MAX_OFFSET, MAX_PARTITION, MAX_TIME_MS, MIN_TIME_MS, parse_min_position, parse_timestamp
from state.rocks_store import ReadOnlyStoreView, RocksStore, open_store
from state.serve import server_config
from tests.unit.state.state_builders import ORDER_TOPIC, order_update

T0 = 1795273200000  # 2026-11-21T15:00:00Z
FAR_FUTURE_MS = 2**62  # an event time past year 9999: storable (int64), not showable as ISO
ROW = "/views/order-status/ord-0000001"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RocksStore]:
    store = open_store(tmp_path / "replica")
    store.apply(
        [order_update("ord-0000001", 1, T0, "PLACED", offset=0), order_update("ord-0000001", 2, T0 + 60_000, "SHIPPED", offset=1),
         order_update("a/history", 1, T0, "PAYMENT_AUTHORIZED", offset=2), order_update("far", 1, FAR_FUTURE_MS, "PLACED", offset=3)],
        position={ORDER_TOPIC: {0: 4}},
    )
    yield store
    store.close()


@pytest.fixture
def app(store: RocksStore) -> FastAPI:
    return create_app(QueryService(ReadOnlyStoreView(store), default_wait_ms=20))


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    # raise_server_exceptions=False: a crash must show as the 500 a caller would see, not as a test error.
    return TestClient(app, raise_server_exceptions=False)


def refused(response: Any, status: int, error: str) -> dict[str, Any]:
    """Assert a one-line JSON refusal with this status and error name; return the body."""
    assert response.status_code == status, response.text[:500]
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert body["detail"] and "\n" not in body["detail"] and len(body["detail"]) <= 500
    return body


# -- times outside years 1-9999 (were 500 or 503) ------------------------------------------


@pytest.mark.parametrize(
    "as_of",
    [
        "253402300800000",  # 10000-01-01T00:00:00Z in epoch ms: was a 500 (ValueError formatting it)
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC: was a 500
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC: was a 500
        "-62135596800001",  # 1 ms before year 1: was a 500
        "9223372036854775808",  # 2**63: was a 503 (InvalidUpdateError from the store's key encoding)
        "-9223372036854775809",  # -2**63 - 1: was a 503
        "1" * 5000,  # past int()'s digit limit
    ],
)
def test_a_time_outside_years_1_to_9999_is_a_422(client: TestClient, as_of: str) -> None:
    """Scenario: as_of outside the supported range, on a row, an index and (via the CLI's path) the service.
    We expect 422 InvalidTimestampError naming the range, everywhere."""
    body = refused(client.get(ROW, params={"as_of": as_of}), 422, "InvalidTimestampError")
    assert "0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z" in body["detail"]
    refused(client.get("/views/order-status", params={"index": "status", "value": "PLACED", "as_of": as_of}), 422, "InvalidTimestampError")


def test_the_ends_of_the_range_are_accepted(client: TestClient) -> None:
    """Scenario: as_of at exactly the first and last supported millisecond. We expect answers (no row then; the row at the end)."""
    refused(client.get(ROW, params={"as_of": str(MIN_TIME_MS)}), 404, "KeyNotFoundError")
    last = client.get(ROW, params={"as_of": "9999-12-31T23:59:59.999Z"})
    assert last.status_code == 200 and last.json()["as_of_ms"] == MAX_TIME_MS and last.json()["row"]["row"]["status"] == "SHIPPED"
    first = refused(client.get(ROW, params={"as_of": "0001-01-01T00:00:00Z"}), 404, "KeyNotFoundError")
    assert f"as of 0001-01-01T00:00:00.000Z ({MIN_TIME_MS} ms)" in first["detail"]


def test_a_stored_time_past_year_9999_is_shown_in_ms_only(client: TestClient) -> None:
    """Scenario: an event carried a time past year 9999 (valid int64, stored as is). We expect 200 with
    valid_from_ms exact and the ISO form null, not a 500 (formatting it raised)."""
    response = client.get("/views/order-status/far")
    assert response.status_code == 200, response.text
    row = response.json()["row"]
    assert row["valid_from_ms"] == FAR_FUTURE_MS and row["valid_from"] is None


# -- min_position: integers out of range, floats, deep JSON (were 500 or 503) --------------


@pytest.mark.parametrize(
    "min_position",
    [
        f"{ORDER_TOPIC}:0:{2**65}",  # was a 500: the 503 handler could not encode "behind" (orjson: 64-bit ints)
        f"{ORDER_TOPIC}:0:{2**63}",  # was a 503 "behind" forever: no Kafka offset is that large
        f"{ORDER_TOPIC}:{2**31}:5",  # partition past Kafka's int32: was a 503
        '{"view.order-status": {"0": 1e400}}',  # was a 500 (OverflowError: int(inf))
        '{"view.order-status": {"0": 1.5}}',  # was silently read as 1
        '{"view.order-status": {"0": NaN}}',
        '{"view.order-status": {"0": true}}',
        '{"a":' * 1500 + "1" + "}" * 1500,  # was a 500 (RecursionError)
        '{"view.order-status": ' + "[" * 1500 + "]" * 1500 + "}",
        "not a topic!:0:1",  # could never be reached: was a 503 after wait_ms
        "orders:0",
    ],
)
def test_a_malformed_or_unreachable_min_position_is_a_422(client: TestClient, min_position: str) -> None:
    """Scenario: min_position with offsets/partitions past Kafka's integer types, non-integers, deep nesting,
    illegal topics. We expect 422 InvalidPositionError with a one-line, bounded detail."""
    refused(client.get(ROW, params={"min_position": min_position, "wait_ms": 0}), 422, "InvalidPositionError")
    refused(client.get(ROW + "/history", params={"min_position": min_position, "wait_ms": 0}), 422, "InvalidPositionError")


def test_the_largest_offset_is_still_a_position_the_replica_is_behind(client: TestClient) -> None:
    """Scenario: offset 2**63 - 1 (legal, not reached). We expect the documented 503 with behind encodable as JSON."""
    body = refused(client.get(ROW, params={"min_position": f"{ORDER_TOPIC}:0:{2**63 - 1}", "wait_ms": 0}), 503, "ReplicaBehindError")
    assert body["behind"] == {ORDER_TOPIC: {"0": 2**63 - 1 - 4}}


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), st.from_regex(r"-?[0-9]{1,25}", fullmatch=True), st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T.*", fullmatch=True)))
def test_any_timestamp_text_parses_in_range_or_is_refused(text: str) -> None:
    """Scenario: arbitrary text as a timestamp. We expect a time in the supported range or InvalidTimestampError, nothing else."""
    try:
        ms = parse_timestamp(text)
    except InvalidTimestampError as exc:
        assert "\n" not in str(exc)
    else:
        assert MIN_TIME_MS <= ms <= MAX_TIME_MS


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), st.from_regex(r"\{.*\}", fullmatch=True), st.from_regex(r"[a-z.]{1,5}:-?[0-9]{1,25}:-?[0-9.e]{1,25}", fullmatch=True)))
def test_any_position_text_parses_to_kafka_ranges_or_is_refused(text: str) -> None:
    """Scenario: arbitrary text as a min_position. We expect a position within Kafka's types or InvalidPositionError, nothing else."""
    try:
        position = parse_min_position(text)
    except InvalidPositionError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(0 <= p <= MAX_PARTITION and 0 <= o <= MAX_OFFSET for parts in position.values() for p, o in parts.items())


# -- keys and values over the size limit (were 503) -----------------------------------------


def test_the_key_limit_is_the_stores() -> None:
    """Scenario: the documented limit next to the store's key encoding. We expect the same number: every stored key is askable."""
    assert len(lp("k" * MAX_KEY_BYTES)) == MAX_KEY_BYTES + 2
    with pytest.raises(Exception, match="longer than 65535"):
        lp("k" * (MAX_KEY_BYTES + 1))


def test_a_key_that_is_not_unicode_is_a_query_error(store: RocksStore) -> None:
    """Scenario: the CLI passes an undecodable argv byte (a lone surrogate) as the key. We expect QueryError, not UnicodeEncodeError."""
    with pytest.raises(QueryError, match="surrogate"):
        QueryService(ReadOnlyStoreView(store)).get("order-status", "ord-\udcff")


@pytest.fixture
def server(app: FastAPI) -> Iterator[int]:
    """The app under the uvicorn configuration `rewind serve` uses, on a free port; yields the port."""
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


def raw_get(port: int, target: str, *, chunk_bytes: int = 8192) -> tuple[int, bytes]:
    """GET ``target`` over a plain socket, the request sent in pieces as a network would deliver it; (status, body)."""
    request = f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for at in range(0, len(request), chunk_bytes):
            conn.sendall(request[at : at + chunk_bytes])
            time.sleep(0.002)  # separate reads on the server side
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_a_70000_byte_key_over_the_real_server_is_a_422(server: int) -> None:
    """Scenario: a 70,000-byte key sent to `rewind serve`'s server configuration in network-sized pieces.
    We expect 422 naming the limit (was a 503 from the store; h11's default would refuse the request line)."""
    status, body = raw_get(server, "/views/order-status/" + "k" * 70_000)
    assert status == 422 and b"is 70000 bytes of UTF-8; the limit is 65535" in body, body[:300]


@pytest.mark.parametrize(
    "target",
    ["/views/order-status/{}", "/views/order-status/{}/history", "/views/order-status?index=status&value={}"],
)
def test_keys_and_values_one_byte_over_the_limit_are_a_422(server: int, target: str) -> None:
    """Scenario: a key or index value of 65,536 bytes in a multi-byte script, percent-encoded (196 kB of URL).
    We expect 422 saying how long (was a 503); at exactly 65,535 bytes, an answer."""
    over = "%E2%82%AC" * 21_845 + "k"  # 21,845 euro signs (3 bytes each) and one more byte
    status, body = raw_get(server, target.format(over))
    assert status == 422 and b"is 65536 bytes of UTF-8; the limit is 65535" in body, body[:300]
    status, body = raw_get(server, target.format("%E2%82%AC" * 21_845))
    assert status in (200, 404), body[:300]


# -- a key with a slash never reaches another endpoint (was a wrong 200) --------------------


def test_an_encoded_slash_stays_in_the_key(client: TestClient) -> None:
    """Scenario: GET /views/order-status/ord-0000001%2Fhistory. We expect the row 'ord-0000001/history' (none: 404),
    not ord-0000001's history; and a stored key with a slash readable as a row and as a history."""
    body = refused(client.get("/views/order-status/ord-0000001%2Fhistory"), 404, "KeyNotFoundError")
    assert "'ord-0000001/history'" in body["detail"]
    row = client.get("/views/order-status/a%2Fhistory")
    assert row.status_code == 200 and row.json()["key"] == "a/history" and row.json()["row"]["row"]["status"] == "PAYMENT_AUTHORIZED"
    history = client.get("/views/order-status/a%2fhistory/history")  # lower-case hex too
    assert history.status_code == 200 and [v["key"] for v in history.json()["versions"]] == ["a/history"]
    assert client.get("/views/order-status/ord-0000001/history").json()["count"] == 2  # the real history route is unchanged


def test_other_percent_escapes_decode_as_before(client: TestClient) -> None:
    """Scenario: escaped letters, an escaped percent sign, an escaped view name. We expect each decoded exactly once
    (Starlette's TestClient decodes its path twice: only the raw path is trusted)."""
    assert client.get("/views/order-status/ord-000000%31").json()["key"] == "ord-0000001"
    assert client.get("/views/order%2Dstatus/ord-0000001").json()["view"] == "order-status"
    assert "'ord%31'" in refused(client.get("/views/order-status/ord%2531"), 404, "KeyNotFoundError")["detail"]


def test_a_path_that_is_not_utf8_is_a_422(client: TestClient) -> None:
    """Scenario: a key whose percent-escapes are not UTF-8. We expect 422 (it was decoded to U+FFFD: another key, silently)."""
    refused(client.get("/views/order-status/ord-%FF"), 422, "InvalidRequest")


# -- the rest of the surface answers in the same shape -------------------------------------


def test_unknown_endpoints_and_methods_answer_one_line_json(client: TestClient) -> None:
    """Scenario: a path no route matches, a method no route takes. We expect 404/405 in the error shape, with Allow on 405."""
    assert refused(client.get("/nope"), 404, "NotFound")["detail"].startswith("GET /nope")
    response = client.post(ROW)
    refused(response, 405, "MethodNotAllowed")
    assert response.headers["allow"] == "GET"


def test_unknown_view_and_index_details_stay_short(client: TestClient) -> None:
    """Scenario: a 10,000-character view name and index name (echoed in the reason). We expect 404/422 with a bounded detail."""
    refused(client.get("/views/" + "v" * 10_000 + "/k"), 404, "UnknownViewError")
    refused(client.get("/views/order-status", params={"index": "i" * 10_000}), 422, "UnknownIndexError")
