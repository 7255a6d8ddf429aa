"""How the C library hands memory to torch on a CPU.

glibc gives a freed block of a few megabytes straight back to the system, and a training
step frees and allocates such blocks (activations, gradients) at every layer. The next
step then asks the system again, and every page of the block costs a page fault the first
time it is touched: about two million faults, a quarter of the time, in one run of the
workshop profile (measured: 31.8 s against 23.3 s with it). ``keep_freed_memory`` raises
glibc's two thresholds, so that freed blocks stay in the process and are reused. It changes
where the memory comes from, never what is computed: every result stays bit for bit the same.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # blocks up to this size come from the heap (glibc's maximum)
TRIM_THRESHOLD = 128 * 2**20  # free memory kept at the heap's top before it is given back
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@functools.cache
def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of faulting it in again.

    Returns whether the thresholds are set. It does nothing (False) where the C library
    is not glibc (macOS, Windows, musl) and where the user set glibc's own environment
    variables for it (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_): their choice wins.
    Calling it again costs nothing. The process keeps up to TRIM_THRESHOLD bytes of freed
    memory for later; it is still given back when more than that is free.
    """
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in _ENVIRONMENT):
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    # mallopt returns 1 on success; a threshold set by hand also ends glibc's own adjusting
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
