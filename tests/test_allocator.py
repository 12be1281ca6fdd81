"""Loader workers keep freed memory for the next batch: with ``reuse_freed_memory`` the buffers
of a batch are written into pages earlier batches used, not into fresh ones."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sslight.data import TensorImageSource, build_train_loader

_FAULTS = """
import ctypes, resource, sys
from sslight.data.allocator import reuse_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
tuned = sys.argv[1] == "tuned" and reuse_freed_memory()
SIZE = 8 * 2**20
def faults(batches):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(batches):
        buffers = [libc.malloc(SIZE) for _ in range(4)]  # a batch's buffers, alive together
        for buffer in buffers:
            ctypes.memset(buffer, 1, SIZE)
        for buffer in buffers:
            libc.free(buffer)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(2)
print(tuned, faults(3))
"""


def _faults(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    tuned, faults = done.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_without_page_faults():
    took, tuned = _faults("tuned")
    _, default = _faults("default")
    assert took == "True"
    assert tuned < 64  # three batches of four 8 MiB buffers in the pages of the first two
    assert default > 2 * 4 * 8 * 2**20 // 4096  # by default, trimmed and faulted in again


def test_loader_workers_start_with_the_allocator_tuned():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    source = TensorImageSource(images, torch.zeros(4, dtype=torch.long), ["a"])
    loader, _ = build_train_loader(source, lambda im: [im.float()], 2, seed=0, num_workers=1)
    assert loader.worker_init_fn.__name__ == "reuse_freed_memory"
    assert len(list(loader)) == 2
