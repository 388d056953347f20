"""Fewer glibc malloc arenas for a long-lived process with many native threads.

glibc gives each thread that allocates concurrently an arena of its own, up to 8 per core,
and memory freed in an arena mostly stays with it. librdkafka's and RocksDB's threads,
allocating and freeing records and blocks all the time, then grow the resident set with
the backlog instead of keeping it flat (measured, `rewind run order-status --engine batch`
over 2M events: 970 MB and climbing with the default, 420 MB flat from 600k to 2M events
with two arenas). This is ``MALLOC_ARENA_MAX=2``, set from inside the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["limit_malloc_arenas"]

log = logging.getLogger("rewind")

#: mallopt's parameter number for the arena limit (glibc's malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (>= 1) for threads started from now on; call it before the
    Kafka clients and stores start their threads. True when applied; False off glibc (nothing to do)."""
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators have no such knob
        return False
    applied = bool(mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas)))
    if not applied:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return applied
