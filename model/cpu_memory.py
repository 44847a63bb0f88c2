"""glibc allocator settings for CPU inference: keep freed feature maps for the next pass.

Every forward pass allocates and frees feature maps of several MB. By default glibc serves
such blocks with fresh ``mmap`` calls once its adaptive threshold says so, and trims the
top of the heap when they are freed, so the next pass faults the same pages in again, each
zero-filled by the kernel. On a 200x192x192 volume that was 0.3-0.9 million minor page
faults; with the thresholds below it was about 10 thousand, and the volume ran 10-20 %
faster on 2 cores (the peak RSS grew by 10-70 MB). The settings are process-wide, like
``torch.set_num_threads``, and a no-op where the C library has no ``mallopt`` (not glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling for it on 64-bit
TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024
TOP_PAD_BYTES = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Serve blocks under 32 MB from the heap and keep up to 512 MB of freed heap.

    Returns:
        True when the C library took the settings, False where it has no ``mallopt``.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (M_TOP_PAD, TOP_PAD_BYTES),
        )
    )
