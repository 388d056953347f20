"""The one settings object. Built explicitly (never at import time) from env vars and CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RewindSettings", "ENV_VARS"]


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class RewindSettings(BaseSettings):
    """Everything configurable. Field aliases are the env var names; CLI flags pass overrides by field name."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
        description="Use this Kafka cluster; when unset, the local broker started by `rewind kafka up`.",
    )
    kafka_port: int = Field(default=9092, ge=1, le=65535, validation_alias=_env("REWIND_KAFKA_PORT"))
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535, validation_alias=_env("REWIND_KAFKA_CONTROLLER_PORT"))
    schema_registry_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        validation_alias=_env("REWIND_SCHEMA_REGISTRY_URL"),
        description=(
            "Confluent-compatible schema registry, e.g. http://127.0.0.1:18081/apis/ccompat/v7 "
            "(`rewind registry up` prints it); unset: no registry."
        ),
    )
    orders_topic: str = Field(default="orders", min_length=1, validation_alias=_env("REWIND_ORDERS_TOPIC"))
    orders_partitions: int = Field(default=12, ge=1, le=1000, validation_alias=_env("REWIND_ORDERS_PARTITIONS"))
    dlq_topic: str = Field(default="orders.dlq", min_length=1, validation_alias=_env("REWIND_DLQ_TOPIC"))
    view_topic_prefix: str = Field(
        default="",
        validation_alias=_env("REWIND_VIEW_TOPIC_PREFIX"),
        description="Prepended to view.<name> topic names, to keep deployments or test runs apart.",
    )
    state_dir: Path = Field(default=Path(".run/state"), validation_alias=_env("REWIND_STATE_DIR"))
    replica_dir: Path | None = Field(
        default=None,
        validation_alias=_env("REWIND_REPLICA_DIR"),
        description="Read replica store directory (default: <state_dir>/replica).",
    )
    max_lateness_ms: int = Field(
        default=600_000,
        ge=0,
        validation_alias=_env("REWIND_MAX_LATENESS_MS"),
        description=(
            "A speed hint, never an answer: how late events usually arrive (replay of counter views holds "
            "changes this long to write them in event-time order; the workload generator's lateness)."
        ),
    )
    guarantee: Literal["exactly-once", "at-least-once"] = Field(
        default="exactly-once", validation_alias=_env("REWIND_GUARANTEE")
    )
    commit_interval_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias=_env("REWIND_COMMIT_INTERVAL_S"),
        description="Seconds between checkpoints (Kafka transaction commits under exactly-once).",
    )
    connect_timeout_s: float = Field(default=15.0, gt=0, validation_alias=_env("REWIND_CONNECT_TIMEOUT_S"))
    engine: Literal["quix", "batch"] = Field(
        default="batch",
        validation_alias=_env("REWIND_ENGINE"),
        description=(
            "Live engine of `rewind run`: quix (Quix Streams, one message at a time) or batch (pipelines.batch: "
            "the same kernel over consumed batches, exactly-once, several times faster)."
        ),
    )
    instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,120}$",
        validation_alias=_env("REWIND_INSTANCE_ID"),
        description=(
            "This pipeline instance's stable identity in its consumer group (static membership and "
            "transactional id); unset: derived from the view, the host name and the absolute state directory. "
            "Must differ between instances running at the same time, and stay the same across restarts."
        ),
    )
    live_row_cache_rows: int = Field(
        default=100_000,
        ge=1,
        validation_alias=_env("REWIND_LIVE_ROW_CACHE_ROWS"),
        description=(
            "Order rows a live pipeline keeps in memory to skip state-store reads (about 1.2 kB each; "
            "a miss only costs a store read)."
        ),
    )
    replay_keep_generations: int = Field(
        default=3,
        ge=1,
        validation_alias=_env("REWIND_REPLAY_KEEP_GENERATIONS"),
        description=(
            "Replay generations of a view kept on disk after `rewind replay --swap` (the newest N; "
            "the served one and its rollback target are always kept)."
        ),
    )
    batch_snapshot_dir: Path = Field(
        default=Path(".run/snapshots/batch"),
        validation_alias=_env("REWIND_BATCH_SNAPSHOT_DIR"),
        description=(
            "Where the batch engine keeps snapshots of its partition stores (one folder per group), apart from the "
            "state dir so that a lost state dir restarts from them; shared by a group's instances on a machine."
        ),
    )
    batch_snapshot_interval_s: float = Field(
        default=60.0,
        ge=0,
        validation_alias=_env("REWIND_BATCH_SNAPSHOT_INTERVAL_S"),
        description="Seconds between the batch engine's snapshots of its partition stores (0: none).",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=_env("REWIND_DATABASE_URL"),
        description=(
            "The order service's event store and outbox, as a SQLAlchemy URL: sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB (`rewind postgres up` prints one); unset: sqlite:///.run/orders.sqlite."
        ),
    )
    postgres_port: int = Field(default=15432, ge=1, le=65535, validation_alias=_env("REWIND_POSTGRES_PORT"))
    orders_service_port: int = Field(default=8086, ge=1, le=65535, validation_alias=_env("REWIND_ORDERS_SERVICE_PORT"))
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        validation_alias=_env("REWIND_METRICS_PORT"),
        description=(
            "Serve Prometheus metrics on 127.0.0.1:PORT/metrics (`rewind run`, `rewind outbox relay`); unset: none. "
            "One port per process: give each its own (README, Metrics)."
        ),
    )

    def bootstrap(self) -> str:
        """The bootstrap servers to use: the configured cluster, or the local broker's address."""
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    def event_store_url(self) -> str:
        """The order service's database URL: the configured one, or the default SQLite file under .run/."""
        return self.database_url or "sqlite:///.run/orders.sqlite"

    @property
    def uses_local_broker(self) -> bool:
        """True when no external cluster is configured, so `rewind kafka up` manages one."""
        return not self.kafka_bootstrap_servers


def _env_var(name: str, field: FieldInfo) -> str:
    """The env var of a field declared with :func:`_env` (its first alias choice)."""
    alias = field.validation_alias
    if not isinstance(alias, AliasChoices) or not isinstance(alias.choices[0], str):
        raise TypeError(f"RewindSettings.{name} must declare validation_alias=_env(...)")
    return alias.choices[0]


#: Field name -> env var name, for CLI help text.
ENV_VARS: dict[str, str] = {name: _env_var(name, field) for name, field in RewindSettings.model_fields.items()}
