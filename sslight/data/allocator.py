"""glibc malloc settings for the processes that make views: freed buffers stay in the heap.

A batch of ImageNet views allocates and frees hundreds of MB of tensors. By default glibc hands
allocations above a threshold (128 KiB, raised as large blocks are freed, to 32 MiB at most)
straight to ``mmap`` and gives freed memory at the top of the heap back to the kernel, so batch
after batch writes into fresh pages and pays a page fault every 4 KiB: on the 2-core machines
measured, a third of a worker's time. ``reuse_freed_memory`` fixes the mmap threshold at its
32 MiB maximum and the trim threshold at 1 GiB, the tuning PyTorch's CPU performance guides give
for glibc (the other being jemalloc or tcmalloc preloaded): the heap keeps its pages and the next
batch reuses them. The loader workers call it when they start; it is a no-op off glibc.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed
TRIM_THRESHOLD = 2**30


def reuse_freed_memory(worker_id: int | None = None) -> bool:
    """Keep freed memory in this process's heap for reuse (a ``DataLoader`` ``worker_init_fn``);
    ``True`` when glibc took the settings."""
    del worker_id
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols, or not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
