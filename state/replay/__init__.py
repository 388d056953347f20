"""The replay engine: rebuild a view (now, or as of any past time) by folding the orders log.

Modules, by responsibility:

* :mod:`~state.replay.plan` – which offsets to read (offsets_for_times, lateness bound);
* :mod:`~state.replay.reader` – bounded per-partition reading, in batches;
* the fast, codec-exact event decoder is :mod:`schemas.fast_decode` (the live pipeline uses it too);
* :mod:`~state.replay.fold` – the live pipeline's folds with the as-of prefix rule;
* :mod:`~state.replay.workers` – partition-parallel worker processes;
* :mod:`~state.replay.orderrows` – a worker's order rows: recent ones in memory, the rest spilled to disk;
* :mod:`~state.replay.sink` – view updates (every version) into the store, with the position;
* :mod:`~state.replay.held` – re-keyed changes held back until no earlier one can still arrive;
* :mod:`~state.replay.rowwrites`, :mod:`~state.replay.counterwrites` – the store's writes encoded
  straight from folded rows (byte-identical to ``RocksStore.apply``, without reading the store);
* :mod:`~state.replay.foldstate`, :mod:`~state.replay.output` – what a replay output holds;
* :mod:`~state.replay.swap` – served directories and the atomic swap;
* :mod:`~state.replay.progress`, :mod:`~state.replay.stopping` – progress bar, SIGINT/SIGTERM;
* :mod:`~state.replay.engine` – the steps, end to end.

Snapshots (checkpoints that seed replays) are in :mod:`state.snapshots`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> defining module. Loaded on first use (PEP 562), so that importing one
# submodule (state.snapshots needs foldstate and output) does not import the engine,
# which itself needs state.snapshots.
_EXPORTS = {
    "ReplayRequest": "engine", "ReplayResult": "engine", "StoreOpener": "engine", "default_store_opener": "engine",
    "run_replay": "engine", "checkpoint_view_store": "engine",
    "FoldCounters": "fold", "FoldedChange": "fold", "OrderFolder": "fold", "RawRecord": "fold", "ViewFolder": "fold",
    "ReplayManifest": "output", "fold_fingerprint": "output", "read_manifest": "output",
    "ReplayMode": "plan", "ReplayPlan": "plan", "parse_time_ms": "plan", "plan_replay": "plan",
    "NullProgress": "progress", "ReplayProgress": "progress", "RichProgress": "progress",
    "SwapResult": "swap", "new_generation_dir": "swap", "prune": "swap", "served_dir": "swap", "swap_view": "swap",
}

__all__ = [
    "ReplayRequest",
    "ReplayResult",
    "StoreOpener",
    "default_store_opener",
    "run_replay",
    "checkpoint_view_store",
    "FoldCounters",
    "FoldedChange",
    "OrderFolder",
    "RawRecord",
    "ViewFolder",
    "ReplayManifest",
    "fold_fingerprint",
    "read_manifest",
    "ReplayMode",
    "ReplayPlan",
    "parse_time_ms",
    "plan_replay",
    "NullProgress",
    "ReplayProgress",
    "RichProgress",
    "SwapResult",
    "new_generation_dir",
    "prune",
    "served_dir",
    "swap_view",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'state.replay' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"state.replay.{module}"), name)
    globals()[name] = value
    return value
