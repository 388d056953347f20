"""`rewind query` and `rewind serve`: read the views (now, as of T, by index, history) and serve them over HTTP.

Each command imports what it runs inside its own body, so that ``rewind --help`` and the other
commands do not pay for it (Quix, rocksdict, the replay engine).
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import typer

from pipelines.projections import VIEW_NAMES
from schemas.errors import ConfigError
from scripts.cli_common import build_settings, check_dir, check_topic, parse_time_arg, setting_option

__all__ = ["register"]


def _check_listen(host: str, port: int) -> None:
    """ConfigError unless ``host`` resolves and ``port`` can be bound there now (the probe socket is closed at once).

    Checked before the replica starts: uvicorn would only log a failed bind and exit after it.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT leftovers are no conflict
            probe.bind(address)
    except OSError as exc:  # socket.gaierror included
        raise ConfigError(f"--host {host!r} --port {port}: cannot listen there ({exc.strerror or exc})") from exc


def _replica_dir(replica_dir: Path | None, state_dir: Path | None) -> Path:
    settings = build_settings(state_dir=state_dir, replica_dir=replica_dir)
    return settings.replica_dir if settings.replica_dir is not None else settings.state_dir / "replica"


def _store_dir(view: str, *, replica_dir: Path | None, state_dir: Path | None, replayed: bool) -> Path:
    """The replica directory, or with ``replayed`` the view store of the replay output currently served."""
    if not replayed:
        return _replica_dir(replica_dir, state_dir)
    from state.errors import StoreNotFoundError
    from state.replay.swap import served_dir

    served = served_dir(build_settings(state_dir=state_dir).state_dir / "views", view)
    if served is None:
        raise StoreNotFoundError(f"no replayed {view} is served (run `rewind replay {view} --from-offset 0 --swap`)")
    return served / "view"


def _remote(url: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """GET ``url + path``; an error answer becomes the matching RewindError (one line, non-zero exit)."""
    import httpx

    from pipelines import errors as pipeline_errors
    from schemas import errors as schema_errors
    from schemas.errors import RewindError
    from state import errors as state_errors
    from state.errors import QueryServerError, ReplicaBehindError

    try:
        response = httpx.get(url.rstrip("/") + path, params={k: v for k, v in params.items() if v is not None}, timeout=65.0)
    except httpx.HTTPError as exc:
        raise QueryServerError(f"cannot reach query server {url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    if response.status_code == 200:
        return body
    detail = body.get("detail") or f"HTTP {response.status_code}"
    name = body.get("error")
    if name == "ReplicaBehindError":
        behind = {t: {int(p): o for p, o in parts.items()} for t, parts in body.get("behind", {}).items()}
        raise ReplicaBehindError(detail, behind=behind)
    # The server names the error class; look it up in the packages' errors modules.
    cls = next((getattr(m, name) for m in (state_errors, pipeline_errors, schema_errors) if name and hasattr(m, name)), None)
    if not (isinstance(cls, type) and issubclass(cls, RewindError)):
        raise QueryServerError(f"query server answered {response.status_code}: {detail}")
    raise cls(detail)


def _print_table(answer: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def cell(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    rows = [answer["row"]] if "row" in answer else answer.get("rows", answer.get("versions", []))
    title = f"{answer['view']}" + (f" as of {answer['as_of']}" if answer.get("as_of") else "")
    if "row" in answer and answer["row"] is not None:
        # One row: field / value, so wide rows (order-status has ~20 fields) stay readable.
        item = answer["row"]
        table = Table("field", "value", title=title)
        for name, value in (("key", item["key"]), ("valid_from", item["valid_from"]), ("valid_to", item["valid_to"] or "-")):
            table.add_row(name, value)
        for name, value in item["row"].items():
            if value is not None:
                table.add_row(name, cell(value))
    else:
        # Many rows: the scalar fields only (items lists and such are in the JSON output).
        fields: list[str] = []
        for item in rows:
            fields += [f for f, v in item["row"].items()
                       if f not in fields and not isinstance(v, (list, dict)) and v != item["key"]]
        fields = fields[:6]
        table = Table("key", "valid_from", "valid_to", *fields, title=title)
        for item in rows:
            table.add_row(item["key"], item["valid_from"], item["valid_to"] or "-", *(cell(item["row"].get(f)) for f in fields))
    parts = [(t, p, o) for t, by_partition in answer.get("position", {}).items() for p, o in by_partition.items()]
    table.caption = (f"replica position: {sum(o for _, _, o in parts):,} records over {len(parts)} topic-partitions "
                     "(exact offsets in the JSON output)") if parts else "replica position: (empty)"
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the query and serve commands to ``app``."""

    @app.command()
    def query(
        view: str = typer.Argument(..., help=f"View: {', '.join(VIEW_NAMES)}."),
        key: str | None = typer.Argument(None, help="Row key (orderId, customerId, sku, currency:windowStart). Omit with --index."),
        as_of: str | None = typer.Option(None, "--as-of", help="ISO-8601 with zone (2026-11-21T15:00:00Z) or epoch ms; inclusive."),
        index: str | None = typer.Option(None, help="Secondary index: status=SHIPPED (equality) or lifetimeValue / revenue (top rows)."),
        limit: int | None = typer.Option(None, min=1, help="At most this many rows (index default 100; history default all)."),
        history: bool = typer.Option(False, "--history", help="Every version of KEY, oldest first."),
        table: bool = typer.Option(False, "--table", help="Print a table instead of JSON."),
        url: str | None = typer.Option(None, help="Ask a running `rewind serve` at this URL (e.g. http://127.0.0.1:8080) instead of the directory."),
        min_position: str | None = typer.Option(None, help="Wait until the replica reached topic:partition:next_offset[,...] (or JSON)."),
        wait_ms: int | None = typer.Option(None, min=0, help="How long to wait for --min-position (default 2000)."),
        replica_dir: Path | None = setting_option("replica_dir", "Replica store directory (default: <state dir>/replica)."),
        state_dir: Path | None = setting_option("state_dir", "State directory; the replica lives in <state dir>/replica."),
        replayed: bool = typer.Option(
            False, "--replayed", help="Read the view that `rewind replay --swap` serves (<state dir>/views/VIEW/current) instead of the replica."
        ),
    ) -> None:
        """Query a view: a row now or as of a time, rows by index, or a row's history (JSON or --table)."""
        from pipelines.projections import get_projection
        from state.errors import QueryError

        get_projection(view)  # an unknown view is named before any store is opened or server asked
        if as_of is not None:
            parse_time_arg("--as-of", as_of)  # the same parser the store and the server use, plus the CLI's range
        if (key is None) == (index is None):
            raise QueryError("give either a KEY or --index (not both)")
        if history and key is None:
            raise QueryError("--history needs a KEY")
        if history and as_of is not None:
            raise QueryError("--history lists every version; drop --as-of")
        if url:
            from urllib.parse import quote

            common = {"min_position": min_position, "wait_ms": wait_ms}
            if index is not None:
                name, _, value = index.partition("=")
                params = {"index": name, "value": value or None, "as_of": as_of, "limit": limit, **common}
                answer = _remote(url, f"/views/{quote(view, safe='')}", params)
            else:
                assert key is not None  # exactly one of KEY and --index, checked above
                row_path = f"/views/{quote(view, safe='')}/{quote(key, safe='')}"
                if history:
                    answer = _remote(url, f"{row_path}/history", {"limit": limit, **common})
                else:
                    answer = _remote(url, row_path, {"as_of": as_of, **common})
        else:
            from state.query import QueryService
            from state.rocks_store import open_store

            store = open_store(_store_dir(view, replica_dir=replica_dir, state_dir=state_dir, replayed=replayed), read_only=True)
            try:
                service = QueryService(store)
                kw: dict[str, Any] = {"min_position": min_position, "wait_ms": wait_ms}
                if index is not None:
                    result = service.scan(view, index=index, as_of=as_of, limit=limit or 100, **kw)
                else:
                    assert key is not None  # exactly one of KEY and --index, checked above
                    result = service.history(view, key, limit=limit, **kw) if history else service.get(view, key, as_of=as_of, **kw)
                answer = json.loads(json.dumps(result.to_json()))
            finally:
                store.close()
        if table:
            _print_table(answer)
        else:
            typer.echo(json.dumps(answer, indent=2))

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
        port: int = typer.Option(8080, min=1, max=65535, help="Port to listen on."),
        view_topic_prefix: str | None = setting_option("view_topic_prefix", "Prefix of the view topics to consume (<prefix>view.<name>)."),
        wait_ms: int = typer.Option(2000, min=0, max=60_000, help="Default wait for a query's min_position."),
        replica_dir: Path | None = setting_option("replica_dir", "Replica store directory (default: <state dir>/replica)."),
        state_dir: Path | None = setting_option("state_dir", "State directory; the replica lives in <state dir>/replica."),
        kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
    ) -> None:
        """Consume every view.<name> topic into the versioned read replica and serve the HTTP query API until SIGTERM/SIGINT."""
        from pipelines.errors import BrokerUnreachableError
        from pipelines.topics import check_reachable
        from state.replica import view_topics
        from state.serve import serve as run_serve

        settings = build_settings(state_dir=state_dir, kafka_bootstrap_servers=kafka_bootstrap_servers,
                                  view_topic_prefix=view_topic_prefix, replica_dir=replica_dir)
        # Arguments before the broker: the replica opens its store and starts consuming before uvicorn binds.
        store_dir = settings.replica_dir if settings.replica_dir is not None else settings.state_dir / "replica"
        check_dir("--replica-dir" if settings.replica_dir is not None else "--state-dir", store_dir)
        for topic in view_topics(prefix=settings.view_topic_prefix):
            check_topic("--view-topic-prefix", topic)
        _check_listen(host, port)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        try:
            check_reachable(settings.bootstrap(), timeout_s=min(settings.connect_timeout_s, 5.0))
        except BrokerUnreachableError as exc:
            # Started during an outage: serve the store as of its position (/healthz says degraded) and
            # let the replica wait for the broker, as it does when the broker goes away later.
            logging.getLogger("rewind.serve").warning("%s; serving the replica's store as it is until it answers", exc)
        run_serve(
            store_dir,
            bootstrap=settings.bootstrap(),
            topics=view_topics(prefix=settings.view_topic_prefix),
            host=host,
            port=port,
            default_wait_ms=wait_ms,
        )
