"""A local single-node Apache Kafka broker (KRaft), run from Maven Central jars.

Used by ``rewind kafka up|down|status`` and by the integration-test command
when no ``KAFKA_BOOTSTRAP_SERVERS`` is given. One JVM runs a combined
broker+controller node on 127.0.0.1, configured so that a single node can do
everything the project needs, Kafka transactions included (every internal
topic gets replication factor 1 and min.isr 1).

Files:

- jars: ``~/.cache/rewind/kafka-<version>/lib`` (outside git, shared by all
  checkouts), fetched once with ``mvn`` from ``scripts/kafka/pom.xml``;
- everything else under the run dir, ``<project root>/.run/kafka`` by default:
  ``data/`` (the Kafka log dir, formatted once and kept across restarts),
  ``cluster.id``, ``server.properties``, ``log4j2.properties``, ``broker.log``
  and ``broker.pid``.

Only a process this module started (pid file, and a command line naming
``kafka.Kafka`` with this run dir's ``server.properties``) is ever signalled.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "KAFKA_VERSION",
    "KafkaLocalError",
    "LocalKafkaPaths",
    "down",
    "fetch_jars",
    "new_cluster_id",
    "render_server_properties",
    "status",
    "up",
    "wait_until_ready",
]

# Must match <kafka.version> in scripts/kafka/pom.xml (a unit test checks it);
# it names the jar cache so that two versions never share a classpath.
KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"

_SCRIPTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = _SCRIPTS_DIR.parent
POM_FILE = _SCRIPTS_DIR / "kafka" / "pom.xml"
LOG4J2_TEMPLATE = _SCRIPTS_DIR / "kafka" / "log4j2.properties"

_BROKER_MAIN = "kafka.Kafka"
_STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
# Kafka's own G1 settings from bin/kafka-run-class.sh; OOM ends the JVM at
# once instead of leaving a half-dead broker that still holds the ports.
_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
_INTERNAL_TOPIC_PARTITIONS = 4  # default 50: slow first use on a 2-core machine
_LOG_TAIL_LINES = 20
_POLL_INTERVAL_S = 0.1
_MVN_TIMEOUT_S = 900.0
_FORMAT_TIMEOUT_S = 120.0
_KILL_WAIT_S = 10.0
_HEAP_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_CLUSTER_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{21}$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

# Popen objects of brokers started by this process, so that _is_alive() can
# reap one that exited (a zombie still answers os.kill(pid, 0)).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


class KafkaLocalError(Exception):
    """The local broker could not be fetched, started, reached or stopped.

    The first line of the message says what failed and what to do; for a
    failed start, the last lines of the broker log follow.
    """


def _default_run_dir() -> Path:
    return PROJECT_ROOT / ".run" / "kafka"


def _default_lib_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "rewind" / f"kafka-{KAFKA_VERSION}" / "lib"


@dataclass(frozen=True)
class LocalKafkaPaths:
    """Where the local broker keeps its jars, data, config, log and pid."""

    run_dir: Path = field(default_factory=_default_run_dir)
    lib_dir: Path = field(default_factory=_default_lib_dir)

    def __post_init__(self) -> None:
        # Absolute paths: they go into the java command line, which is how
        # down() recognises the process as ours.
        object.__setattr__(self, "run_dir", Path(self.run_dir).expanduser().resolve())
        object.__setattr__(self, "lib_dir", Path(self.lib_dir).expanduser().resolve())

    @property
    def data_dir(self) -> Path:
        """Kafka's log.dirs; formatted once, kept across down/up."""
        return self.run_dir / "data"

    @property
    def cluster_id_file(self) -> Path:
        return self.run_dir / "cluster.id"

    @property
    def server_properties(self) -> Path:
        return self.run_dir / "server.properties"

    @property
    def log4j2_properties(self) -> Path:
        return self.run_dir / "log4j2.properties"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / ".lock"

    @property
    def jars_marker(self) -> Path:
        """Written last by fetch_jars; holds the pom's digest."""
        return self.lib_dir / ".complete"


# ---------------------------------------------------------------- pure parts


def new_cluster_id() -> str:
    """A random KRaft cluster id: 22 chars of unpadded urlsafe base64.

    Same shape as Kafka's ``Uuid.randomUuid().toString()``; an id starting
    with '-' is drawn again because the command-line tools would read it as
    an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_server_properties(*, port: int, controller_port: int, data_dir: Path) -> str:
    """server.properties for one combined broker+controller node on 127.0.0.1."""
    settings: list[tuple[str, object, str]] = [
        ("process.roles", "broker,controller", "one JVM is both broker and KRaft controller"),
        ("node.id", 1, ""),
        ("controller.quorum.bootstrap.servers", f"{HOST}:{controller_port}",
         "dynamic quorum: storage is formatted with --standalone"),
        ("listeners", f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
         "loopback only: nothing outside this machine can reach it"),
        ("advertised.listeners", f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}", ""),
        ("inter.broker.listener.name", "PLAINTEXT", ""),
        ("controller.listener.names", "CONTROLLER", ""),
        ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT", ""),
        ("log.dirs", str(data_dir), ""),
        ("num.partitions", 1, "default for auto-created topics"),
        ("default.replication.factor", 1, ""),
        ("min.insync.replicas", 1, ""),
        ("auto.create.topics.enable", "true", ""),
        ("offsets.topic.replication.factor", 1, "default 3: no __consumer_offsets on one node"),
        ("offsets.topic.num.partitions", _INTERNAL_TOPIC_PARTITIONS, "default 50: slow first use on 2 cores"),
        ("transaction.state.log.replication.factor", 1, "default 3: no __transaction_state on one node"),
        ("transaction.state.log.min.isr", 1, "default 2: InitProducerId would fail on one node"),
        ("transaction.state.log.num.partitions", _INTERNAL_TOPIC_PARTITIONS, "default 50"),
        ("share.coordinator.state.topic.replication.factor", 1, "default 3"),
        ("share.coordinator.state.topic.min.isr", 1, "default 2"),
        ("share.coordinator.state.topic.num.partitions", _INTERNAL_TOPIC_PARTITIONS, "default 50"),
        ("group.initial.rebalance.delay.ms", 0, "default 3000: first consumer waits for nobody"),
        ("log.cleaner.dedupe.buffer.size", 32 * 1024 * 1024,
         "default 128 MiB of heap; compacted topics here are small"),
    ]
    lines = [
        "# Written by scripts/kafka_local.py on every `up`; edits are overwritten.",
        "# Single-node KRaft: every internal topic has replication factor 1 and",
        "# min.isr 1, so consumer groups and transactions work on one node.",
    ]
    for key, value, why in settings:
        if why:
            lines.append(f"# {why}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _parse_properties(text: str) -> dict[str, str]:
    """key=value lines; enough for the files this module writes."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        result[key.strip()] = value.strip()
    return result


def _bootstrap_from_properties(text: str) -> str | None:
    """host:port of the PLAINTEXT listener in a rendered server.properties."""
    listeners = _parse_properties(text).get("advertised.listeners", "")
    for listener in listeners.split(","):
        name, sep, address = listener.strip().partition("://")
        if sep and name == "PLAINTEXT":
            return address
    return None


# ---------------------------------------------------------------- jars


def _pom_digest() -> str:
    return hashlib.sha256(POM_FILE.read_bytes()).hexdigest()


def _jars_complete(paths: LocalKafkaPaths, digest: str) -> bool:
    try:
        return paths.jars_marker.read_text().strip() == digest
    except OSError:
        return False


def fetch_jars(paths: LocalKafkaPaths, *, console: Any = None) -> None:
    """Copy Kafka and its runtime dependencies into ``paths.lib_dir`` with mvn.

    Idempotent: does nothing when the marker file says a copy from the same
    pom completed. The copy goes to a staging dir that replaces the lib dir
    only when mvn succeeded, so a failed or stale copy never ends up on the
    classpath.
    """
    digest = _pom_digest()
    if _jars_complete(paths, digest):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaLocalError(
            "mvn not found on PATH: install Maven (e.g. `apt-get install maven`) to fetch the Kafka jars"
        )
    parent = paths.lib_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(parent / ".lock"):
        if _jars_complete(paths, digest):  # another process fetched them meanwhile
            return
        _say(console, f"Fetching Kafka {KAFKA_VERSION} jars from Maven Central into {paths.lib_dir} ...")
        staging = Path(tempfile.mkdtemp(prefix=".lib-staging-", dir=parent))
        try:
            cmd = [
                mvn, "-B", "-q", "-f", str(POM_FILE),
                "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ]
            try:
                proc = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, timeout=_MVN_TIMEOUT_S, check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise KafkaLocalError(
                    f"mvn did not finish fetching the Kafka jars within {_MVN_TIMEOUT_S:.0f} s"
                ) from exc
            if proc.returncode != 0:
                raise KafkaLocalError(
                    f"mvn could not fetch the Kafka jars (exit {proc.returncode}); its last output:\n"
                    + _tail(proc.stdout)
                )
            if not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
                raise KafkaLocalError(
                    f"mvn succeeded but kafka_2.13-{KAFKA_VERSION}.jar is missing from {staging}; check {POM_FILE}"
                )
            if paths.lib_dir.exists():
                shutil.rmtree(paths.lib_dir)
            staging.rename(paths.lib_dir)
            paths.jars_marker.write_text(digest + "\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    n_jars = len(list(paths.lib_dir.glob("*.jar")))
    _say(console, f"Fetched {n_jars} jars.")


# ---------------------------------------------------------------- lifecycle


def up(
    *,
    port: int = 9092,
    controller_port: int = 9093,
    paths: LocalKafkaPaths | None = None,
    heap: str = "512m",
    timeout_s: float = 90.0,
    console: Any = None,
) -> str:
    """Start the local broker unless ours is already running; return its bootstrap.

    Steps:
    1. If a broker we started is running, wait until it answers and return.
    2. Refuse ports that something else listens on.
    3. Fetch the jars (cached), write server.properties and log4j2.properties.
    4. Format the data dir once, keeping its cluster id.
    5. Start java detached (own session, so it outlives the caller), log to
       the run dir, write the pid file.
    6. Wait until it answers a metadata request; ``timeout_s`` counts from the
       start of the JVM (or from step 1). On failure the broker is stopped and
       KafkaLocalError carries the last lines of its log.
    """
    paths = paths or LocalKafkaPaths()
    _check_ports(port, controller_port)
    if not _HEAP_RE.match(heap):
        raise KafkaLocalError(f"invalid heap size {heap!r}: use a JVM size such as 512m or 1g")
    bootstrap = f"{HOST}:{port}"
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    _keep_out_of_git(paths.run_dir)
    with _locked(paths.lock_file):
        # Step 1
        pid = _our_pid(paths)
        if pid is not None:
            running_at = _running_bootstrap(paths)
            if running_at != bootstrap:
                raise KafkaLocalError(
                    f"the local broker is already running at {running_at} (pid {pid}); "
                    f"run `rewind kafka down` before starting it at {bootstrap}"
                )
            try:
                _wait_ready(bootstrap, timeout_s=timeout_s, alive=lambda: _is_alive(pid))
            except KafkaLocalError as exc:
                raise KafkaLocalError(
                    f"the local broker (pid {pid}) is running but {exc}; "
                    f"run `rewind kafka down` and try again" + _log_tail_block(paths)
                ) from exc
            return bootstrap
        paths.pid_file.unlink(missing_ok=True)  # stale: process gone or not ours

        # Step 2
        for p in (port, controller_port):
            if not _port_free(p):
                raise KafkaLocalError(
                    f"port {HOST}:{p} is in use by another process, not by a broker started "
                    f"from {paths.run_dir}; stop that process or choose other ports"
                )

        # Step 3
        fetch_jars(paths, console=console)
        java = _find_java()
        _write_atomic(
            paths.server_properties,
            render_server_properties(port=port, controller_port=controller_port, data_dir=paths.data_dir),
        )
        _write_atomic(paths.log4j2_properties, LOG4J2_TEMPLATE.read_text())

        # Step 4
        _format_storage_once(paths, java)

        # Step 5
        _say(console, f"Starting Kafka {KAFKA_VERSION} at {bootstrap} (log: {paths.log_file}) ...")
        pid = _start_broker(paths, java, heap)

        # Step 6
        try:
            _wait_ready(bootstrap, timeout_s=timeout_s, alive=lambda: _is_alive(pid))
        except KafkaLocalError as exc:
            stopped = _stop_pid(pid, timeout_s=_KILL_WAIT_S)
            if stopped:
                paths.pid_file.unlink(missing_ok=True)
            raise KafkaLocalError(
                f"the local broker did not start: {exc}" + _log_tail_block(paths)
            ) from exc
    return bootstrap


def down(*, paths: LocalKafkaPaths | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the broker we started: SIGTERM, wait, SIGKILL only after ``timeout_s``.

    Returns whether a broker of ours was running. The data dir is kept.
    """
    paths = paths or LocalKafkaPaths()
    if not paths.run_dir.is_dir():
        return False
    with _locked(paths.lock_file):
        pid = _our_pid(paths)
        if pid is None:
            paths.pid_file.unlink(missing_ok=True)  # stale: process gone or not ours
            return False
        started_s = time.monotonic()
        if not _stop_pid(pid, timeout_s=timeout_s):
            raise KafkaLocalError(f"the local broker (pid {pid}) did not exit even after SIGKILL")
        paths.pid_file.unlink(missing_ok=True)
        # Kafka logs nothing at INFO when it stops; say so for whoever reads the log.
        with contextlib.suppress(OSError), open(paths.log_file, "a") as log:
            log.write(f"# {_now()} stopped by down() in {time.monotonic() - started_s:.1f} s\n")
        return True


def status(*, paths: LocalKafkaPaths | None = None) -> dict[str, Any]:
    """``{"running", "pid", "bootstrap", "log"}`` of the broker we started.

    Cheap: looks at the pid file and the process only, does not contact Kafka.
    """
    paths = paths or LocalKafkaPaths()
    pid = _our_pid(paths)
    return {
        "running": pid is not None,
        "pid": pid,
        "bootstrap": _running_bootstrap(paths) if pid is not None else None,
        "log": str(paths.log_file),
    }


def wait_until_ready(bootstrap: str, *, timeout_s: float) -> None:
    """Return once Kafka at ``bootstrap`` answers a metadata request.

    The port accepts connections before the broker serves requests, so this
    asks for metadata (list_topics) until it succeeds with at least one
    broker. Raises KafkaLocalError after ``timeout_s``.
    """
    _wait_ready(bootstrap, timeout_s=timeout_s, alive=None)


def _wait_ready(bootstrap: str, *, timeout_s: float, alive: Callable[[], bool] | None) -> None:
    # Imported here so that status/down and the unit tests need no librdkafka.
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    admin = AdminClient({
        "bootstrap.servers": bootstrap,
        # Connection-refused errors are expected while the JVM starts; keep
        # librdkafka from printing them to stderr.
        "log_level": 0,
        # Retry the connection often so readiness is seen within ~0.5 s.
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
    })
    last_error = "no answer yet"
    while True:
        if alive is not None and not alive():
            raise KafkaLocalError("the broker process exited during start-up")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KafkaLocalError(
                f"Kafka at {bootstrap} did not answer within {timeout_s:g} s ({last_error})"
            )
        try:
            # Short per-call timeout: a ready local broker answers in
            # milliseconds, and the alive() check above runs between calls.
            metadata = admin.list_topics(timeout=min(0.5, remaining))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            last_error = error.str() if hasattr(error, "str") else str(error)
        else:
            if metadata.brokers:
                _wait_group_coordinator(bootstrap, deadline=deadline)
                return
            last_error = "metadata listed no brokers"
        time.sleep(min(_POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def _wait_group_coordinator(bootstrap: str, *, deadline: float) -> None:
    """Return once a consumer group's committed offsets can be read.

    A freshly formatted broker answers metadata before __consumer_offsets is
    created and loaded; until then every group call fails with NOT_COORDINATOR
    or COORDINATOR_LOAD_IN_PROGRESS. Asking once here means `up` returns a
    broker that pipelines (and their lag checks) can use at once.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rewind-readiness", "log_level": 0})
    try:
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            try:
                consumer.committed([TopicPartition("__rewind_readiness", 0)], timeout=max(0.5, min(5.0, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                last_error = str(exc.args[0] if exc.args else exc)
            time.sleep(_POLL_INTERVAL_S)
        raise KafkaLocalError(f"Kafka at {bootstrap} answers metadata but its group coordinator is not ready ({last_error})")
    finally:
        consumer.close()


# ---------------------------------------------------------------- helpers


def _format_storage_once(paths: LocalKafkaPaths, java: str) -> None:
    """Format the data dir unless it already is; the cluster id stays with it.

    Reformatting with another cluster id would make the broker refuse its own
    data, so an existing meta.properties is never touched.
    """
    meta = paths.data_dir / "meta.properties"
    if meta.is_file():
        cluster_id = _parse_properties(meta.read_text()).get("cluster.id")
        if cluster_id and _read_cluster_id(paths) != cluster_id:
            _write_atomic(paths.cluster_id_file, cluster_id + "\n")
        return
    cluster_id = _read_cluster_id(paths) or new_cluster_id()
    _write_atomic(paths.cluster_id_file, cluster_id + "\n")
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        java, f"-Dlog4j2.configurationFile={paths.log4j2_properties}",
        "-cp", _classpath(paths), _STORAGE_TOOL_MAIN,
        "format", "-t", cluster_id, "-c", str(paths.server_properties), "--standalone",
    ]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=_FORMAT_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaLocalError(f"formatting {paths.data_dir} took over {_FORMAT_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise KafkaLocalError(
            f"could not format the Kafka data dir {paths.data_dir} (exit {proc.returncode}):\n"
            + _tail(proc.stdout)
        )


def _read_cluster_id(paths: LocalKafkaPaths) -> str | None:
    try:
        cluster_id = paths.cluster_id_file.read_text().strip()
    except OSError:
        return None
    return cluster_id if _CLUSTER_ID_RE.match(cluster_id) else None


def _start_broker(paths: LocalKafkaPaths, java: str, heap: str) -> int:
    cmd = [
        java, f"-Xms{heap}", f"-Xmx{heap}", *_JVM_FLAGS,
        f"-Dlog4j2.configurationFile={paths.log4j2_properties}",
        "-cp", _classpath(paths), _BROKER_MAIN, str(paths.server_properties),
    ]
    # Keep the previous run's log for post-mortems; the tail shown on failure
    # is then this run's only.
    if paths.log_file.exists():
        paths.log_file.replace(paths.log_file.with_name(paths.log_file.name + ".1"))
    with open(paths.log_file, "wb") as log:
        log.write(f"# {_now()} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=paths.run_dir,
            # Own session: no SIGHUP/SIGINT from the caller's terminal, and the
            # broker lives on after the CLI process exits.
            start_new_session=True,
        )
    _STARTED[proc.pid] = proc
    # Outliving the caller is the point; don't let Popen.__del__ warn about it.
    warnings.filterwarnings(
        "ignore", message=f"subprocess {proc.pid} is still running", category=ResourceWarning
    )
    _write_atomic(paths.pid_file, f"{proc.pid}\n")
    return proc.pid


def _stop_pid(pid: int, *, timeout_s: float) -> bool:
    """SIGTERM (Kafka shuts down cleanly), then SIGKILL after timeout_s; True once gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_exit(pid, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_exit(pid, _KILL_WAIT_S):
            return False
    _STARTED.pop(pid, None)
    return True


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL_S)
    return True


def _is_alive(pid: int) -> bool:
    # A broker started by this very process turns into a zombie when it
    # exits, which os.kill(pid, 0) still reports as alive: reap it first,
    # through its Popen so that Popen knows it has exited.
    proc = _STARTED.get(pid)
    if proc is not None and proc.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    # No /proc (macOS): ps prints the command line space-joined.
    try:
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return []
    return out.split()


def _our_pid(paths: LocalKafkaPaths) -> int | None:
    """The pid in the pid file if that process is alive and is our broker."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _is_alive(pid):
        return None
    argv = _cmdline(pid)
    # Both checks: a reused pid, or another checkout's broker, is not ours.
    if _BROKER_MAIN in argv and str(paths.server_properties) in argv:
        return pid
    return None


def _running_bootstrap(paths: LocalKafkaPaths) -> str | None:
    # server.properties is only rewritten while no broker of ours runs, so it
    # is the config the running broker was started with.
    try:
        return _bootstrap_from_properties(paths.server_properties.read_text())
    except OSError:
        return None


def _port_free(port: int) -> bool:
    """Whether Kafka could listen on HOST:port (bind test, like the broker does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the JVM sets it: ignores TIME_WAIT leftovers of a
        # previous broker, still fails when another socket listens there.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _check_ports(port: int, controller_port: int) -> None:
    for p in (port, controller_port):
        if not 1 <= p <= 65535:
            raise KafkaLocalError(f"invalid port {p}: use 1-65535")
    if port == controller_port:
        raise KafkaLocalError(f"the broker and controller ports must differ (both are {port})")


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaLocalError(
            "java not found: install a JDK/JRE 17+ (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )
    return java


def _classpath(paths: LocalKafkaPaths) -> str:
    # The JVM expands "dir/*" itself (to the jars only); no shell is involved.
    return str(paths.lib_dir / "*")


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two concurrent up/down calls take turns."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _keep_out_of_git(run_dir: Path) -> None:
    # The run dir holds data and logs; ignore it even where .gitignore does not.
    ignore = run_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last non-blank lines, without terminal colour codes (mvn prints them)."""
    kept = [line for line in _ANSI_RE.sub("", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _log_tail_block(paths: LocalKafkaPaths) -> str:
    try:
        text = paths.log_file.read_text(errors="replace")
    except OSError:
        return f"\n(no broker log at {paths.log_file})"
    return f"\n--- last lines of {paths.log_file} ---\n{_tail(text)}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _say(console: Any, message: str) -> None:
    # console: a rich Console or anything with print(); None stays silent.
    if console is not None:
        console.print(message)
