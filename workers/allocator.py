"""Keep freed memory in the worker's heap instead of handing it back to the kernel.

A tile's life allocates buffers of 100 KB to a few MB (a decoded block, a 2x2 mosaic,
libvips' output, the JPEG): above glibc's first mmap threshold (128 KiB) each is a fresh
``mmap`` whose pages the kernel zeroes on first touch, and the heap's top is trimmed
back whenever 128 KiB lie free. On this project's 2-core VM those page faults cost
more than the work: copying a 512 x 512 RGB mosaic took 0.5 ms with glibc's defaults
and 0.05 ms from a reused heap, and a whole single-level pyramid's pre-rendering used
15-20% less CPU (issue 20, docs/BENCHMARKS.md section 7).

So a worker node sets, before its pool forks (the settings are inherited), an mmap
threshold of 32 MiB (glibc's own ceiling for its dynamic threshold) and keeps up to
``TILECAST_WORKER_HEAP_KEEP`` bytes free at the top of each heap. What is kept is
reused by the next tile, so it bounds how far a process's resident size stays above
what it uses, not how much it grows.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024


def keep_freed_memory(keep_bytes: int) -> bool:
    """Tune glibc's allocator for this process and the processes it forks later;
    False when ``keep_bytes`` is 0 (glibc's defaults kept) or the C library is not glibc."""
    if keep_bytes <= 0:
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("not glibc: the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    keep = min(keep_bytes, 2**31 - 1)
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, keep) == 1 and done
