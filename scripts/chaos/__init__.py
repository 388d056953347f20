"""The chaos soak (``scripts/soak.py``): the live pipelines, the read replica and a steady workload,
with processes killed and the broker restarted, checked against the workload's own oracle at the end.

One job per module:

- :mod:`scripts.chaos.config`: the run's settings (:class:`SoakConfig`) and its topic names;
- :mod:`scripts.chaos.probe`: what Kafka says about progress (committed offsets, records not yet read);
- :mod:`scripts.chaos.producer`: the load generator, a paced idempotent producer that rides out outages;
- :mod:`scripts.chaos.children`: the processes under test, started, killed and restarted;
- :mod:`scripts.chaos.monitor`: progress sampling and the longest stall;
- :mod:`scripts.chaos.checks`: views, replica and DLQ against the oracle;
- :mod:`scripts.chaos.report`: the summary and the verdict;
- :mod:`scripts.chaos.run`: the timeline that ties them together.

(Not ``scripts/soak/``: a package of that name would shadow ``scripts/soak.py`` as ``scripts.soak``.)
"""

from scripts.chaos.config import SoakConfig
from scripts.chaos.run import SoakInterrupted, run_soak

__all__ = ["SoakConfig", "SoakInterrupted", "run_soak"]
