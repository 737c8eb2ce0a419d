"""Keep freed CPU memory in the process for reuse, instead of returning it to the OS (glibc ``mallopt``).

PyTorch's CPU allocator is the C library's ``malloc``. glibc serves blocks above 32 MiB (a 1024² feature map
of 32 channels is 128 MiB) with a fresh ``mmap`` and unmaps them on free, so every large activation is
page-faulted in again, page by page, on every layer of every call. In a virtual machine a page fault is
expensive: on the 2-core build machine, a 1024² synthesis spent about two thirds of its time in them
(docs/BENCHMARKS.md, issue 11). With mmap off and the heap never trimmed, freed blocks are reused without
faults. The cost: the process keeps its peak heap until it ends (its peak resident set size is unchanged).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "R2S_MALLOC_RETAIN"        # "0": leave malloc as it is
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4      # glibc's mallopt parameters (malloc.h)
_done: bool | None = None


def retain_freed_memory() -> bool:
    """Switch glibc malloc to keep and reuse freed memory (no mmap for large blocks, no heap trimming), once
    per process. Returns whether it is in effect; False (and nothing changed) off Linux/glibc or with
    ``R2S_MALLOC_RETAIN=0``."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):        # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
    if _done:
        log.debug("malloc: freed memory is kept for reuse (set %s=0 to disable)", ENV)
    return _done
