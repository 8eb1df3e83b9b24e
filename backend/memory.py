"""Give freed heap memory back to the operating system after large, short-lived allocations.

An ``/api/infer`` over a large box allocates hundreds of megabytes of numpy arrays in a worker thread. When
they are freed, glibc can keep the pages in that thread's malloc arena, so the process's resident size stays
near its peak after the burst. ``malloc_trim(0)`` returns the free pages of every arena. On a C library without
it (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim``); True when some were released."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
