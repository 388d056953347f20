"""The Apicurio Registry distribution: downloaded once from Maven Central, checked, unpacked into the cache.

Why not ``mvn dependency:unpack`` as for the Kafka jars: Maven reads the
artifact's POM first, and the POM's parent (``io.apicurio:apicurio-registry:
3.0.9``) is not on Maven Central, so every mvn goal fails with "Failed to
read artifact descriptor". The archive itself is there; it is fetched over
HTTPS by its Maven path and checked against the SHA-256 pinned below (the
same value Central publishes as ``.sha256``), so no mvn is needed.
"""

from __future__ import annotations

import hashlib
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from scripts.local_service import fill_cache_once, say
from scripts.registry_local.errors import RegistryLocalError
from scripts.registry_local.paths import REGISTRY_VERSION, LocalRegistryPaths

MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
ARCHIVE_URL = (
    f"{MAVEN_CENTRAL}/io/apicurio/apicurio-registry-app/{REGISTRY_VERSION}/"
    f"apicurio-registry-app-{REGISTRY_VERSION}-all.tar.gz"
)
# sha256 of apicurio-registry-app-3.0.9-all.tar.gz (108,860,403 bytes), as Central's .sha256 file says.
ARCHIVE_SHA256 = "2b28181501a20cbf6efcd77f9b7153908fc01f3d3a7c32024c0bd9e1b04c8a43"

_DOWNLOAD_TIMEOUT_S = 900.0
_SOCKET_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


def _dist_complete(paths: LocalRegistryPaths) -> bool:
    try:
        return paths.dist_marker.read_text().strip() == ARCHIVE_SHA256 and paths.runner_jar.is_file()
    except OSError:
        return False


def fetch_registry(paths: LocalRegistryPaths, *, console: Any = None) -> None:
    """Download, check and unpack the registry into ``paths.dist_dir``.

    Idempotent: does nothing when the marker file names the pinned archive.
    The archive is checked before it is unpacked, and it is unpacked into a
    staging dir that replaces the dist dir only when complete, so a failed or
    tampered download never ends up on the java command line.
    """

    def download_and_unpack(staging: Path) -> Path:
        archive = staging / "app.tar.gz"
        _download(ARCHIVE_URL, archive)
        unpacked = staging / "dist"
        _unpack(archive, unpacked)
        if not (unpacked / paths.runner_jar.name).is_file():
            raise RegistryLocalError(f"{ARCHIVE_URL} unpacked without {paths.runner_jar.name}; the archive has changed shape")
        return unpacked

    fetched = fill_cache_once(
        paths.dist_dir,
        complete=lambda: _dist_complete(paths),
        fill=download_and_unpack,
        marker=paths.dist_marker,
        stamp=ARCHIVE_SHA256,
        lock_file=paths.dist_dir.parent / f".apicurio-registry-{REGISTRY_VERSION}.lock",
        staging_prefix=".registry-staging-",
        before=lambda: say(
            console, f"Fetching Apicurio Registry {REGISTRY_VERSION} (~109 MB) from Maven Central into {paths.dist_dir} ..."
        ),
    )
    if fetched:
        say(console, "Fetched.")


def _download(url: str, target: Path) -> None:
    """Stream ``url`` into ``target``, failing on a deadline or a checksum other than the pinned one."""
    deadline = time.monotonic() + _DOWNLOAD_TIMEOUT_S
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_SOCKET_TIMEOUT_S) as response, open(target, "wb") as out:
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
                if time.monotonic() > deadline:
                    raise RegistryLocalError(f"downloading {url} took over {_DOWNLOAD_TIMEOUT_S:.0f} s; try again on a faster connection")
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryLocalError(f"could not download {url} ({exc}); Maven Central must be reachable (HTTPS proxy: set https_proxy)") from exc
    if digest.hexdigest() != ARCHIVE_SHA256:
        raise RegistryLocalError(f"{url} has sha256 {digest.hexdigest()}, expected {ARCHIVE_SHA256}: refusing to run it")


def _unpack(archive: Path, target: Path) -> None:
    """Extract regular files and dirs only, all inside ``target`` (the checksum already vouches for the content)."""
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+
            tar.extractall(target, filter="data")
            return
        for member in tar.getmembers():
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                raise RegistryLocalError(f"{ARCHIVE_URL} holds an unexpected entry {member.name!r}; refusing to unpack it")
        tar.extractall(target)  # every member checked above
