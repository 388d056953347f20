"""Micro-benchmark of ``RocksStore.apply``: µs per update, per view, no Kafka.

    python scripts/bench_apply.py [--updates 200000] [--batch 20000] [--views order-status,customer-summary,product-sales]

Builds ``updates`` synthetic ViewUpdates per view (the way the replay sink makes them:
order-status rows with 5 versions per order, counter changes folded with the view's
projection, in event-time order, a few keys per batch repeated) and applies them to a
fresh store in batches of ``batch``, as ``rewind replay`` does. Only ``apply`` is timed, in CPU time of the calling thread
(``time.thread_time``: steadier than wall time on shared cores; RocksDB's own threads excluded).
Also writes a digest of every key/value so two code versions can be compared.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines.projections import Change, get_projection  # noqa: E402
from scripts.bench_synthetic import T0, order_status_updates  # noqa: E402
from state.contracts import SourcePosition, ViewUpdate  # noqa: E402
from state.rocks_open import raw_items  # noqa: E402
from state.rocks_store import open_store  # noqa: E402

TOPIC = "orders"


def counter_updates(view: str, n: int, *, keys: int, fields: tuple[str, ...], seed: int = 7) -> list[ViewUpdate]:
    rng = random.Random(seed)
    projection = get_projection(view)
    rows: dict[str, dict] = {}
    out = []
    for offset in range(n):
        key = f"k-{rng.randrange(keys):05d}"
        # Mostly increasing event time, sometimes a little out of order (re-derivation).
        valid_from_ms = T0 + offset * 10 - (rng.randrange(2000) if rng.random() < 0.02 else 0)
        delta = {fields[rng.randrange(len(fields))]: rng.randrange(1, 5000)}
        order_id = f"o-{offset:08d}"
        row = projection.apply(rows.get(key), Change(key, delta, order_id, 1, valid_from_ms))
        rows[key] = row
        source = SourcePosition(TOPIC, offset % 4, offset)
        out.append(ViewUpdate(view, key, row, row["validFrom"], valid_from_ms, delta, order_id, 1, source, source))
    return out


def make(view: str, n: int) -> list[ViewUpdate]:
    if view == "order-status":
        return list(order_status_updates(n // 5, 5, position_topic=TOPIC))
    if view == "customer-summary":
        return counter_updates(view, n, keys=20_000, fields=("ordersPlaced", "lifetimeValueMinor", "openOrders"))
    if view == "product-sales":
        return counter_updates(view, n, keys=2_000, fields=("unitsOrdered", "revenueMinor", "unitsShipped"))
    raise SystemExit(f"no generator for {view}")


def digest(path: Path) -> str:
    """A hash of every key and value of the closed store in ``path`` (compare two code versions)."""
    store = open_store(path, read_only=True)
    h = hashlib.sha256()
    for k, v in raw_items(store._db, from_key=b""):
        h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
    store.close()
    return h.hexdigest()[:16]


def run(view: str, n: int, batch: int) -> tuple[float, str]:
    updates = make(view, n)
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        store = open_store(Path(tmp) / "s")
        elapsed = 0.0
        for start in range(0, len(updates), batch):
            chunk = updates[start : start + batch]
            where = chunk[-1].record_position
            assert where is not None  # the generators set it
            last = where.offset
            t = time.thread_time()
            store.apply(chunk, position={TOPIC: {0: last + 1}})
            elapsed += time.thread_time() - t
        store.close()
        return elapsed, digest(Path(tmp) / "s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--views", default="order-status,customer-summary,product-sales")
    args = parser.parse_args()
    for view in args.views.split(","):
        elapsed, dig = run(view, args.updates, args.batch)
        print(f"{view:18s} {args.updates} updates  {elapsed:6.2f} s  {elapsed / args.updates * 1e6:6.2f} us/update  "
              f"{args.updates / elapsed:9.0f} /s  digest {dig}", flush=True)


if __name__ == "__main__":
    main()
