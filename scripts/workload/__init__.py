"""The deterministic order-event workload: generator, poison, oracle and producer.

Typical use (what ``rewind`` does)::

    workload = generate(WorkloadConfig(seed=7, orders=200_000, poison_rate=0.01))
    write_oracle(workload, "oracle.sqlite", topic="orders")
    produce_workload(settings, workload, topic="orders", rate=None)
    with Oracle.open("oracle.sqlite") as oracle:
        oracle.order_status_as_of("ord-0000042", t_ms)
"""

from scripts.workload.encoding import FastEncoder
from scripts.workload.events import POISON_KINDS, Emitted, PoisonInfo, PoisonKind, build_event, build_payload
from scripts.workload.generator import DEFAULT_START_MS, Catalog, Workload, WorkloadConfig, generate
from scripts.workload.model import (
    OPEN_EXCLUDED,
    TERMINAL,
    TRANSITIONS,
    Ledger,
    LineItem,
    Order,
    Refund,
    RefundLine,
    Status,
    WorkloadError,
    illegal_event_types,
    is_open,
    next_status,
    rejection_reason,
)
from scripts.workload.oracle import (
    CustomerRow,
    EventRow,
    Oracle,
    OracleError,
    OracleSummary,
    OrderRow,
    OrderVersion,
    PoisonRow,
    SkuRow,
    write_oracle,
)
from scripts.workload.producer import ProduceError, ProduceReport, produce_workload, producer_config

__all__ = [
    # generation
    "WorkloadConfig",
    "Workload",
    "Catalog",
    "Emitted",
    "PoisonInfo",
    "PoisonKind",
    "POISON_KINDS",
    "DEFAULT_START_MS",
    "generate",
    "build_event",
    "build_payload",
    "FastEncoder",
    # the lifecycle model
    "Status",
    "TRANSITIONS",
    "TERMINAL",
    "OPEN_EXCLUDED",
    "LineItem",
    "Order",
    "Refund",
    "RefundLine",
    "Ledger",
    "next_status",
    "illegal_event_types",
    "rejection_reason",
    "is_open",
    "WorkloadError",
    # the oracle
    "write_oracle",
    "Oracle",
    "OracleSummary",
    "OrderVersion",
    "EventRow",
    "OrderRow",
    "CustomerRow",
    "SkuRow",
    "PoisonRow",
    "OracleError",
    # producing
    "produce_workload",
    "producer_config",
    "ProduceReport",
    "ProduceError",
]
