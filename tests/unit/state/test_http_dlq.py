"""GET /dlq and /dlq/{id} (state/http_dlq.py) without a broker: arguments first, then one-line 404/503, never a hang or a 500."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi.testclient import TestClient

from state.http_api import create_app
from state.http_dlq import DlqList, LetterDetail
from state.memory_store import MemoryStore
from state.query import QueryService
from state.replica import ReplicaStatus

CLOSED = "127.0.0.1:1"  # nothing listens on port 1


def _status(bootstrap: str) -> ReplicaStatus:
    return ReplicaStatus(running=True, error=None, records=0, malformed=0, last_malformed=None, assigned={}, bootstrap=bootstrap)


@pytest.fixture(scope="module")
def static() -> TestClient:
    """An app over a static store: no replica, so no broker to read dead letters from."""
    return TestClient(create_app(QueryService(MemoryStore())))


def _one_line_error(response: httpx.Response, status: int, error: str | None = None) -> dict[str, str]:
    body: dict[str, str] = response.json()
    assert response.status_code == status, body
    assert set(body) == {"error", "detail"} and "\n" not in body["detail"] and body["detail"]
    if error is not None:
        assert body["error"] == error, body
    return body


@pytest.mark.parametrize("path", ["/dlq", "/dlq?reason=Parked&order=o1&pipeline=order-status&limit=0", "/dlq/3:17"])
def test_an_app_without_a_broker_says_it_serves_no_dead_letters(static: TestClient, path: str) -> None:
    """Scenario: /dlq on an app that reads no broker. We expect a 404 DlqNotServed in one line (not a 5xx)."""
    _one_line_error(static.get(path), 404, "DlqNotServed")


@pytest.mark.parametrize("path", ["/dlq?limit=-1", "/dlq?limit=10001", "/dlq?limit=x", "/dlq?reason=", "/dlq?order=",
                                  "/dlq/x", "/dlq/3", "/dlq/3:", "/dlq/-1:5", "/dlq/3:17:1", f"/dlq/{2**31}:0", f"/dlq/0:{2**63}"])
def test_bad_arguments_are_422_before_any_broker(static: TestClient, path: str) -> None:
    """Scenario: a malformed limit, empty filter or malformed id. We expect 422 in one line, even with no broker at all."""
    _one_line_error(static.get(path), 422)


def test_an_unreachable_broker_is_a_503_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: the replica's broker does not answer. We expect 503 BrokerUnreachableError naming it, within the connect timeout."""
    monkeypatch.setenv("REWIND_CONNECT_TIMEOUT_S", "1")
    client = TestClient(create_app(QueryService(MemoryStore()), replica_status=lambda: _status(CLOSED)))
    for path in ("/dlq", "/dlq/0:0"):
        started = time.monotonic()
        body = _one_line_error(client.get(path), 503, "BrokerUnreachableError")
        assert CLOSED in body["detail"] and time.monotonic() - started < 10


def test_the_document_declares_the_routes_and_their_bodies(static: TestClient) -> None:
    """Scenario: /openapi.json. We expect both routes with 200 bodies DlqList and LetterDetail, and 404, 422, 503 declared."""
    paths = static.get("/openapi.json").json()["paths"]
    for path, model in (("/dlq", DlqList), ("/dlq/{letter_id}", LetterDetail)):
        responses = paths[path]["get"]["responses"]
        assert {"200", "404", "422", "503"} <= set(responses)
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model.__name__)
