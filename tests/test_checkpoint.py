"""``save_checkpoint``'s temporary file is its process's own: a requeued job and a straggler of
the job it replaces, saving into one run directory at once, never write into one file, and
every ``last.pt`` either of them leaves loads whole."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslight.engine.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
WRITER = """
import sys, torch
from pathlib import Path
from sslight.engine.checkpoint import save_checkpoint
directory, writer = Path(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()  # both writers start together
weights = {"w": torch.full((1 << 20,), float(writer))}  # 4 MB: writes that overlap
for step in range(30):
    save_checkpoint({"model": weights, "step": step}, directory)
"""


class DiskFull:
    """Fails halfway through ``torch.save``, as a full disk does."""

    def __reduce__(self):
        raise OSError(28, "No space left on device (disk full)")


def _state(value: float, step: int = 0) -> dict:
    return {"model": {"w": torch.full((8,), value)}, "step": step}


def _temporaries(directory: Path) -> list[Path]:
    return sorted(directory.glob(".last.pt.*.tmp"))


def test_two_processes_saving_into_one_directory_at_once_leave_a_whole_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(n)],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for n in (1, 2)
    ]
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    state = load_checkpoint(tmp_path)
    assert state["step"] == 29 and float(state["model"]["w"][0]) in (1.0, 2.0)
    assert torch.equal(state["model"]["w"], torch.full((1 << 20,), state["model"]["w"][0]))
    assert _temporaries(tmp_path) == []


def test_a_live_writers_temporary_file_is_left_alone_and_a_dead_ones_removed(tmp_path):
    straggler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        prefix = f".last.pt.{socket.gethostname()}.{straggler.pid}."
        its_write = tmp_path / f"{prefix}k3j9.tmp"
        its_write.write_bytes(b"half of a checkpoint")
        save_checkpoint(_state(1.0), tmp_path)
        assert its_write.read_bytes() == b"half of a checkpoint"
        assert load_checkpoint(tmp_path)["model"]["w"][0] == 1.0
    finally:
        straggler.kill()
        straggler.wait()
    elsewhere = tmp_path / f".last.pt.other-host.{straggler.pid}.x1.tmp"
    elsewhere.write_bytes(b"another host's write")
    save_checkpoint(_state(2.0, step=1), tmp_path)
    assert _temporaries(tmp_path) == [elsewhere]  # the dead writer's is gone
    assert load_checkpoint(tmp_path)["step"] == 1
    assert torch.load(tmp_path / "prev.pt", weights_only=True)["step"] == 0


def test_a_failed_write_leaves_the_last_checkpoint_and_no_temporary_file(tmp_path):
    save_checkpoint(_state(1.0), tmp_path)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {}, "write": DiskFull()}, tmp_path)
    assert _temporaries(tmp_path) == []
    assert load_checkpoint(tmp_path)["model"]["w"][0] == 1.0
