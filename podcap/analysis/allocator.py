"""Freed memory kept for the next step instead of handed back to the kernel.

An analysis allocates and frees arrays of a million rows step after step. glibc's malloc
gives every block above its mmap threshold (128 KiB at first, raised as blocks are freed)
back to the kernel at once, and trims the heap's free top: the next step's arrays then fault
in fresh pages, which the kernel must zero first. Measured on the dns report of 1M packets,
that zeroing was a third of the DNS steps' time, and the whole command 0.3-0.5 s slower.

``keep_freed_memory`` raises both thresholds for this process (and the decoder's helper,
forked from it): blocks up to 32 MiB (glibc's highest mmap threshold on 64-bit) come from
the heap and are reused when freed, and up to TRIM_THRESHOLD of free heap stays mapped.
The peak is the same (the memory was in use at the peak anyway); a command does it, a
library call does not (the allocator is the embedding program's).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20
# The user's own settings win (glibc reads these at start-up).
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; False where there is no glibc (musl, macOS)
    or the user set them."""
    if not sys.platform.startswith("linux") or any(k in os.environ for k in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
