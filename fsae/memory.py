"""Keep freed memory in the process instead of handing it back to the kernel after every batch.

Contents:
    retain_freed_memory -- raise glibc's mmap and trim thresholds (``mallopt``), once per process; a no-op elsewhere.

By default glibc serves every allocation above a threshold (128 KiB to 32 MiB, adjusted as it goes) with its own
``mmap`` and returns freed memory at the top of the heap to the kernel. A training or evaluation step allocates and
frees activations of megabytes each time (a batch of 1,000 feature maps of 32 x 13 x 13 floats is 21 MiB), so every
step maps fresh pages and faults them in one by one: the fast config's whole run spent 9.6 s in the kernel before, 0.9
to 1.4 s with the thresholds raised (docs/PERFORMANCE.md). The cost: the process keeps its peak memory until it
exits, which a pretraining run or an agent would reach again at its next step anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


@functools.cache
def retain_freed_memory() -> bool:
    """Tell glibc to keep freed memory (mmap and trim thresholds 1 GiB); True when it took, False where
    there is no glibc (macOS, Windows, musl). Idempotent: the first call decides."""
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            ok = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
        except (OSError, AttributeError):  # no glibc (musl has no mallopt)
            ok = False
    return ok
