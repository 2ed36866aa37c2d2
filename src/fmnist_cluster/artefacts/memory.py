"""A process-wide allocator setting for training loops (the command line makes it once)."""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the system at every step.

    Training (CNN steps, SOM winner-search chunks) allocates and frees the same large buffers
    over and over; by default glibc unmaps large blocks on free, and the next use faults them
    back in page by page (millions of page faults per epoch, 5-10 % of the time on 2 cores).
    Blocks up to 32 MB stay in the heap after this call. A no-op off glibc. The command line
    calls it once before a stage runs; estimators never do (no side effects inside ``fit``).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 512 * 1024 * 1024)
    except (OSError, AttributeError):
        pass
