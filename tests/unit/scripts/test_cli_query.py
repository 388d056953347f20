"""`rewind query` against a replica directory and against a running server (--url), and its one-line errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import uvicorn
from typer.core import TyperGroup, TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from pipelines.errors import UnknownViewError
from schemas.errors import RewindError
from scripts.cli_query import register
from state.errors import InvalidTimestampError, KeyNotFoundError, QueryError
from state.http_api import create_app
from state.query import QueryService
from state.rocks_store import open_store

T0 = 1795273200000


def _update(key: str, seq: int, t: int, status: str, offset: int):
    from state.contracts import SourcePosition, ViewUpdate

    row = {"orderId": key, "status": status, "lastSeq": seq, "validFrom": t}
    return ViewUpdate("order-status", key, row, t, t, None, key, seq, SourcePosition("orders", 0, offset),
                      SourcePosition("view.order-status", 0, offset))


@pytest.fixture
def replica_dir(tmp_path: Path) -> Path:
    store = open_store(tmp_path / "replica")
    store.apply([_update("42", 1, T0, "PLACED", 0), _update("42", 2, T0 + 1000, "SHIPPED", 1)], position={"view.order-status": {0: 2}})
    store.close()
    return tmp_path / "replica"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def run(app: typer.Typer, *args: str) -> str:
    """Invoke like scripts.cli.main does (standalone_mode=False), so RewindErrors propagate as they would to main()."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=True, standalone_mode=False)
    if result.exception is not None:
        raise result.exception
    return result.output


def test_every_command_and_option_has_help(app: typer.Typer) -> None:
    """Scenario: --help of query and serve. We expect help text everywhere and REWIND_REPLICA_DIR shown."""
    group = get_command(app)
    assert isinstance(group, TyperGroup)
    for name in ("query", "serve"):
        command = group.commands[name]
        assert (command.help or "").strip()
        for param in command.params:
            if isinstance(param, TyperOption):
                assert param.help, f"{name} --{param.name} has no help"
        replica = next(p for p in command.params if p.name == "replica_dir")
        assert isinstance(replica, TyperOption) and replica.envvar == "REWIND_REPLICA_DIR" and replica.show_envvar


def test_query_from_the_replica_directory(app: typer.Typer, replica_dir: Path) -> None:
    """Scenario: a row now, as of T, by index, its history. We expect JSON answers with the position."""
    now = json.loads(run(app, "query", "order-status", "42", "--replica-dir", str(replica_dir)))
    assert now["row"]["row"]["status"] == "SHIPPED" and now["position"] == {"view.order-status": {"0": 2}}
    past = json.loads(run(app, "query", "order-status", "42", "--as-of", "2026-11-21T15:00:00Z", "--replica-dir", str(replica_dir)))
    assert past["row"]["row"]["status"] == "PLACED" and past["row"]["valid_to_ms"] == T0 + 1000
    shipped = json.loads(run(app, "query", "order-status", "--index", "status=SHIPPED", "--replica-dir", str(replica_dir)))
    assert [r["key"] for r in shipped["rows"]] == ["42"]
    history = json.loads(run(app, "query", "order-status", "42", "--history", "--replica-dir", str(replica_dir)))
    assert history["count"] == 2
    assert "SHIPPED" in run(app, "query", "order-status", "42", "--table", "--replica-dir", str(replica_dir))


def test_query_errors_are_named_one_line_errors(app: typer.Typer, replica_dir: Path) -> None:
    """Scenario: unknown key, unknown view, bad timestamp, KEY with --index. We expect the named RewindError, one line."""
    cases = [
        (KeyNotFoundError, ["order-status", "nope"]),
        (UnknownViewError, ["nope", "42"]),
        (InvalidTimestampError, ["order-status", "42", "--as-of", "2026-11-21 15:00"]),
        (QueryError, ["order-status", "42", "--index", "status=SHIPPED"]),
    ]
    for error, args in cases:
        with pytest.raises(error) as info:
            run(app, "query", *args, "--replica-dir", str(replica_dir))
        assert isinstance(info.value, RewindError) and "\n" not in str(info.value)


@pytest.fixture
def server_url(replica_dir: Path) -> Iterator[str]:
    store = open_store(replica_dir, read_only=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(QueryService(store)), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)  # polling a flag with a deadline, not synchronising on time
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    store.close()


def test_query_over_http_with_url(app: typer.Typer, server_url: str) -> None:
    """Scenario: the same questions via --url. We expect the same answers and the same named errors."""
    past = json.loads(run(app, "query", "order-status", "42", "--as-of", str(T0 + 999), "--url", server_url))
    assert past["row"]["row"]["status"] == "PLACED"
    shipped = json.loads(run(app, "query", "order-status", "--index", "status=SHIPPED", "--url", server_url))
    assert [r["key"] for r in shipped["rows"]] == ["42"]
    assert json.loads(run(app, "query", "order-status", "42", "--history", "--url", server_url))["count"] == 2
    with pytest.raises(KeyNotFoundError):
        run(app, "query", "order-status", "nope", "--url", server_url)
    with pytest.raises(InvalidTimestampError):
        run(app, "query", "order-status", "42", "--as-of", "noon", "--url", server_url)
