"""Data-parallel pretraining: two gloo processes on the CPU, env:// rendezvous via torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sslight.config.load import config_to_dict
from sslight.engine.metrics import read_metrics

WORKER = Path(__file__).with_name("ddp_worker.py")
METHOD_ARGS = {
    "dino": {},
    "swav": {"swav": {"queue_length": 16, "epoch_queue_starts": 1, "num_prototypes": 32}},
    "moco": {"moco": {"queue_length": 32, "hidden_dim": 32, "out_dim": 16}},
}
PER_PROCESS_STATE = ("running_mean", "running_var", "num_batches_tracked")


def _torchrun(config: Path, out: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(config),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("method", ["dino", "swav", "moco"])
def test_two_gloo_processes_keep_identical_weights_and_only_rank_zero_writes(
    make_run, tmp_path, method
):
    run_dir = tmp_path / "run"
    cfg = make_run(
        run_dir,
        method=method,
        backbone="resnet18",
        train={"epochs": 2, "max_steps_per_epoch": 2, "batch_size": 8},
        **METHOD_ARGS[method],
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))

    done = _torchrun(config, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    shared = [k for k in rank0 if not k.endswith(PER_PROCESS_STATE)]
    differing = [k for k in shared if not torch.equal(rank0[k], rank1[k])]
    assert not differing, f"ranks diverged in {differing[:5]}"
    start = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert start["world_size"] == 2 and len(start["rng"]) == 2
    if method == "swav":  # queues differ per process: one copy per rank
        assert len(start["method_state_per_rank"]) == 2

    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "type" not in r]
    assert steps == [0, 1, 2, 3], "one writer: each step logged once"
    assert not list(tmp_path.glob("run/checkpoints/*.tmp"))
