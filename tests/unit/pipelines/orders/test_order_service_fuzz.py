"""The order service's HTTP API under an OpenAPI-driven fuzzer (schemathesis): the real app over a real SQLite event store.

Schemathesis reads the app's own /openapi.json and sends, for every operation, the schema's
examples, boundary cases and random valid and invalid requests. The database is healthy, so
every answer must be a status the document declares and never a 5xx (not even a 503), with a
declared content type and a body that validates against the declared schema; an invalid
request must be refused with a 4xx. An order is placed before the run under the id the
document gives as its example, so generated commands also reach a real order and its fold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from pipelines.orders.commands import LineItem, PlaceOrder
from pipelines.orders.database import migrate, open_database
from pipelines.orders.event_store import EventStore
from pipelines.orders.service import EXAMPLE_ORDER_ID, create_app

EXAMPLES_PER_OPERATION = 40


def no_server_error(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """No 5xx at all: the database is up, so not even a 503 is expected."""
    assert response.status_code < 500, f"{response.status_code}: {response.content[:300]!r}"


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection]


def _document() -> dict[str, object]:
    """The app's OpenAPI document (it does not depend on the database: an in-memory one serves to build it at collection)."""
    engine = open_database("sqlite:///:memory:")
    try:
        return create_app(EventStore(engine)).openapi()
    finally:
        engine.dispose()


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES_PER_OPERATION, database="none")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app over a migrated SQLite event store holding one placed order (module scope: generated commands pile up in it)."""
    engine = open_database(f"sqlite:///{Path(tmp_path_factory.mktemp('orders-fuzz')) / 'orders.sqlite'}")
    migrate(engine)
    store = EventStore(engine)
    store.execute(PlaceOrder(command_id="seed", order_id=EXAMPLE_ORDER_ID, customer_id="c", items=[LineItem(sku="A", quantity=2, unit_price_minor=5)],
                             currency="EUR"))
    yield create_app(store)
    engine.dispose()


def test_the_fuzzed_document_is_the_apps(app: FastAPI) -> None:
    """Scenario: the fuzzer's document comes from an app over an empty in-memory database. We expect it equal to what the real app serves."""
    assert TestClient(app).get("/openapi.json").json() == _document()


@schema.parametrize()
def test_no_input_gets_a_5xx_or_an_undocumented_answer(case: schemathesis.Case, app: FastAPI) -> None:
    """Scenario: generated valid and invalid requests to every endpoint. We expect no 5xx, and every answer as documented."""
    case.call_and_validate(app=app, checks=CHECKS)
