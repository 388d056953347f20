"""`rewind serve`: the read replica and the HTTP query API in one process.

1. Open the replica store writable: this process owns it.
2. Start the replica loop (:class:`~state.replica.Replica`) in a background thread.
3. Run uvicorn in the calling (main) thread; on SIGINT/SIGTERM it stops accepting
   connections, finishes the requests in flight and returns. (uvicorn re-raises the
   signal once it is done; our own handler takes it, so steps 4-5 still run.)
4. Stop the replica loop after its current batch (an applied batch is always whole:
   data and position share one WriteBatch).
5. Flush and close the store; return normally (exit code 0).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from state.http_api import create_app
from state.query import DEFAULT_WAIT_MS, QueryService
from state.query_args import MAX_KEY_BYTES
from state.replica import Replica
from state.rocks_store import ReadOnlyStoreView, open_store
from state.signals_noted import signals_noted

__all__ = ["serve", "server_config", "MAX_REQUEST_HEAD_BYTES"]

log = logging.getLogger(__name__)

#: The longest request head uvicorn (h11) takes: the longest key, percent-encoded (three bytes
#: a byte at worst), plus 64 KiB for the rest of the request line and the headers.
MAX_REQUEST_HEAD_BYTES = 3 * MAX_KEY_BYTES + 64 * 1024


def server_config(app: ASGIApp, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration `rewind serve` runs ``app`` with (port 0: any free port)."""
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        # h11, not httptools (which uvicorn picks when installed, for the order service): httptools
        # refuses a request line of a 65,535-byte key outright ("Invalid HTTP request received.", a
        # bare 400), and keys that long are this API's to answer. h11's default refuses a request head that arrives in pieces once it passes 16 KiB, so a
        # long key over a real network would get "Invalid HTTP request" instead of its answer.
        http="h11",
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )


def serve(
    store_dir: Path,
    *,
    bootstrap: str,
    topics: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 8080,
    default_wait_ms: int = DEFAULT_WAIT_MS,
    log_level: str = "info",
) -> None:
    """Run until SIGINT/SIGTERM (see the module docstring for the steps)."""
    # Step 1
    store = open_store(store_dir)
    try:
        # Step 2
        replica = Replica(store, bootstrap=bootstrap, topics=topics)
        replica.start()
        # Step 3: the query side only gets the read-only face of the store.
        service = QueryService(ReadOnlyStoreView(store), default_wait_ms=default_wait_ms)
        app = create_app(service, replica_status=replica.status)
        log.info("serving %s on http://%s:%d (replica of %s)", store_dir, host, port, ", ".join(topics))
        with signals_noted() as noted:
            uvicorn.Server(server_config(app, host=host, port=port, log_level=log_level)).run()
        # Step 4
        log.info("stopping (signal %s): replica loop, then store", noted or "none")
        replica.stop()
    finally:
        # Step 5
        store.close()
