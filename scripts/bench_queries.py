"""Benchmark point as-of reads of the versioned replica: in process and over HTTP (real uvicorn on loopback).

    python scripts/bench_queries.py [--orders 200000] [--versions 5] [--queries 50000] [--http-queries 10000]

1. Build a store synthetically through the store API (``apply`` in batches, as the replica
   does): ``orders`` order-status rows with ``versions`` versions each, 1 s apart.
2. In process: ``get_as_of`` for random (order, T), T uniform over the order's lifetime
   plus a little before and after (so some answers are None); latency per call.
3. Over HTTP: start ``uvicorn`` in a child process serving the store read-only, then
   ``GET /views/order-status/{key}?as_of=T`` on one keep-alive connection; latency per
   request as seen by the client (includes the client's own parsing).

Aims (issue): in-process p99 < 100 µs, HTTP p99 < 2 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench_synthetic import T0, order_status_updates  # noqa: E402
from state.contracts import ViewUpdate  # noqa: E402
from state.rocks_store import open_store  # noqa: E402

TOPIC = "view.order-status"


def build(path: Path, *, orders: int, versions: int, batch: int = 5000) -> float:
    """Step 1: fill ``path``; returns seconds taken."""
    store = open_store(path)
    started = time.perf_counter()
    offset = 0
    pending: list[ViewUpdate] = []
    for update in order_status_updates(orders, versions, position_topic=TOPIC):
        pending.append(update)
        offset += 1
        if len(pending) >= batch:
            store.apply(pending, position={TOPIC: {0: offset}})
            pending = []
    if pending:
        store.apply(pending, position={TOPIC: {0: offset}})
    store.close()
    return time.perf_counter() - started


def _targets(n: int, *, orders: int, versions: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        i = rng.randrange(orders)
        out.append((f"o-{i:07d}", T0 + i * 10 + rng.randrange(-500, versions * 1000 + 500)))
    return out


def _summary(name: str, samples_ns: list[int]) -> dict[str, float | str | int]:
    ordered = sorted(samples_ns)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return {"what": name, "n": len(ordered), "p50_us": round(pick(0.50), 1), "p99_us": round(pick(0.99), 1),
            "p999_us": round(pick(0.999), 1), "mean_us": round(statistics.fmean(ordered) / 1000, 1)}


def bench_in_process(path: Path, *, queries: int, orders: int, versions: int) -> dict[str, float | str | int]:
    """Step 2."""
    store = open_store(path, read_only=True)
    targets = _targets(queries, orders=orders, versions=versions, seed=1)
    for key, as_of in targets[:2000]:  # warm the block cache and the code paths
        store.get_as_of("order-status", key, as_of)
    samples = []
    clock = time.perf_counter_ns
    for key, as_of in targets:
        started = clock()
        store.get_as_of("order-status", key, as_of)
        samples.append(clock() - started)
    store.close()
    return _summary("in-process get_as_of", samples)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: HTTP requests sent before timing starts.
HTTP_WARMUP = 500


def serve_only(path: Path, port: int) -> None:
    """The child process of step 3: the query API over the store, read-only, no replica loop."""
    # Only this child serves HTTP: the parent (the load generator) does not import the server stack.
    import uvicorn

    from state.http_api import create_app
    from state.query import QueryService

    store = open_store(path, read_only=True)
    uvicorn.run(create_app(QueryService(store)), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def bench_http(path: Path, *, queries: int, orders: int, versions: int) -> dict[str, float | str | int]:
    """Step 3."""
    port = _free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve-only", str(path), "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                connection.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("query server did not start") from None
                time.sleep(0.05)
        targets = _targets(queries, orders=orders, versions=versions, seed=2)
        samples = []
        statuses: dict[int, int] = {}
        for n, (key, as_of) in enumerate(targets):
            started = time.perf_counter_ns()
            connection.request("GET", f"/views/order-status/{key}?as_of={as_of}")
            response = connection.getresponse()
            response.read()
            if n >= HTTP_WARMUP:  # the first requests warm the server
                samples.append(time.perf_counter_ns() - started)
            statuses[response.status] = statuses.get(response.status, 0) + 1
        connection.close()
        result = _summary("HTTP GET /views/order-status/{key}?as_of=", samples)
        result["statuses"] = json.dumps(statuses)
        return result
    finally:
        child.terminate()
        child.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200_000, help="Orders in the synthetic store.")
    parser.add_argument("--versions", type=int, default=5, help="Versions per order.")
    parser.add_argument("--queries", type=int, default=50_000, help="In-process as-of reads to time.")
    parser.add_argument("--http-queries", type=int, default=10_000, help=f"HTTP as-of reads to send (the first {HTTP_WARMUP} are not timed).")
    parser.add_argument("--dir", type=Path, default=None, help="Store directory (default: a temporary one; reused if it exists).")
    parser.add_argument("--serve-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.http_queries <= HTTP_WARMUP:
        parser.error(f"--http-queries must be more than the {HTTP_WARMUP} warm-up requests")
    if args.serve_only is not None:
        serve_only(args.serve_only, args.port)
        return
    with tempfile.TemporaryDirectory(prefix="rewind-bench-") as tmp:
        path = args.dir or Path(tmp) / "store"
        if not (path / "CURRENT").exists():
            seconds = build(path, orders=args.orders, versions=args.versions)
            total = args.orders * args.versions
            print(f"built {total:,} versions ({args.orders:,} orders x {args.versions}) in {seconds:.1f}s "
                  f"({total / seconds:,.0f} updates/s)", flush=True)
        for result in (
            bench_in_process(path, queries=args.queries, orders=args.orders, versions=args.versions),
            bench_http(path, queries=args.http_queries, orders=args.orders, versions=args.versions),
        ):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
