"""Process-level CPU runtime settings: glibc malloc tuned for training loops; free heap given back (servers).

glibc's malloc serves every block above its mmap threshold (dynamic, up to 32 MiB) with a fresh mmap and
unmaps it on free, so a training step that frees and reallocates the same activations and gradients
faults their pages in again every step. `tune_cpu_allocator` raises the mmap threshold and the trim
threshold with `mallopt`, so freed blocks stay in the heap and the next step reuses them, at the cost of
keeping more memory resident between steps (the figures: docs/benchmarks.md).

Process-wide, so only code that owns the process calls it (`aiayn train`, the benchmarks), never
`import aiayn`. The same settings from the environment: MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=2147483647.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Callable

M_TRIM_THRESHOLD = -1  # malloc.h: free memory at the top of the heap kept before it is given back
M_MMAP_THRESHOLD = -3  # malloc.h: blocks at least this large get their own mmap (and munmap on free)
# M_MMAP_MAX (-4) stays as it is: blocks over the 1 GiB threshold may still be mapped, and given back on free

MMAP_THRESHOLD = 1 << 30  # 1 GiB: a block larger than this is still mapped and unmapped (a cap, not infinite)
TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt accepts (an int): up to 2 GiB of free heap top is kept

ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_")
TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold", "glibc.malloc.mmap_max")


def _user_settings() -> list[str]:
    """The malloc settings the environment already makes (MALLOC_*_ variables, GLIBC_TUNABLES entries)."""
    found = [name for name in ENV_VARS if name in os.environ]
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    found += [name for name in TUNABLES if name + "=" in tunables]
    return found


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt from the running process, or None off Linux/glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def tune_cpu_allocator() -> str | None:
    """Keep freed blocks up to 1 GiB in glibc's heap for reuse; a line saying what was done, None off glibc."""
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return None
    user = _user_settings()
    if user:
        return f"malloc: left as the environment sets it ({', '.join(user)})"
    done, refused = [], []
    for option, value, name in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD, "mmap threshold"),
                                (M_TRIM_THRESHOLD, TRIM_THRESHOLD, "trim threshold")):
        (done if mallopt(option, value) == 1 else refused).append(f"{name} {value >> 20} MiB")
    line = "malloc: " + (", ".join(done) + " (freed blocks kept for reuse)" if done else "glibc defaults kept")
    return line + (f"; mallopt refused {', '.join(refused)}" if refused else "")


_TRIM: Callable[[int], int] | None | bool = False  # glibc's malloc_trim once looked up (None: not glibc)


def trim_heap() -> bool:
    """Give the free pages of glibc's heaps back to the system (malloc_trim(0)); False off Linux/glibc.

    A long-lived process that searches batches of every shape (a server's workers) otherwise keeps the
    freed blocks of its largest batches resident in fragmented heaps, and its RSS creeps up.
    """
    global _TRIM
    if _TRIM is False:
        _TRIM = None
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                _TRIM = ctypes.CDLL(None).malloc_trim
                _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
            except (OSError, AttributeError):
                _TRIM = None
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
