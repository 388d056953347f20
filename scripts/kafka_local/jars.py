"""The Kafka jars: fetched once from Maven Central with mvn, checked against the pom's digest."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

from scripts.kafka_local.errors import KafkaLocalError
from scripts.kafka_local.paths import KAFKA_VERSION, POM_FILE, LocalKafkaPaths
from scripts.local_service import fill_cache_once, say, tail

_MVN_TIMEOUT_S = 900.0


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

    def copy_dependencies(staging: Path) -> Path:
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
                + tail(proc.stdout)
            )
        if not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            raise KafkaLocalError(
                f"mvn succeeded but kafka_2.13-{KAFKA_VERSION}.jar is missing from {staging}; check {POM_FILE}"
            )
        return staging

    fetched = fill_cache_once(
        paths.lib_dir,
        complete=lambda: _jars_complete(paths, digest),
        fill=copy_dependencies,
        marker=paths.jars_marker,
        stamp=digest,
        lock_file=paths.lib_dir.parent / ".lock",
        staging_prefix=".lib-staging-",
        before=lambda: say(console, f"Fetching Kafka {KAFKA_VERSION} jars from Maven Central into {paths.lib_dir} ..."),
    )
    if fetched:
        n_jars = len(list(paths.lib_dir.glob("*.jar")))
        say(console, f"Fetched {n_jars} jars.")
