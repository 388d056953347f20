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
* :mod:`~state.replay.foldstate`, :mod:`~state.replay.output` – what a replay output holds;
* :mod:`~state.replay.swap` – served directories and the atomic swap;
* :mod:`~state.replay.progress`, :mod:`~state.replay.stopping` – progress bar, SIGINT/SIGTERM;
* :mod:`~state.replay.engine` – the steps, end to end.

Snapshots (checkpoints that seed replays) are in :mod:`state.snapshots`.

This package re-exports nothing: import each name from the module that defines it
(``from state.replay.engine import ReplayRequest, run_replay``). Re-exporting the engine
here would make a cycle, since :mod:`state.snapshots` needs ``foldstate``, ``output`` and
``plan`` (importing any of them runs this file first) and the engine needs ``state.snapshots``.
"""

__all__: list[str] = []
