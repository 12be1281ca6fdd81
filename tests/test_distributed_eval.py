"""Data-parallel evaluations: ``sslight run`` in two gloo processes (torchrun, CPU) scores what one
process scores with the same global batch, and the COCO transfer trains and evaluates.

Two processes and one see the same global batches; only floating-point summation order differs
(gradients averaged over the ranks, features gathered, batch-norm sums all-reduced by
``CpuSyncBatchNorm``). So the comparison is tight: k-NN scores are equal, and linear and
fine-tuned weights agree to ``WEIGHT_ATOL``, batch-norm running statistics (sums of the ranks'
sums, rounded in another order) to ``STATS_ATOL``, and their accuracies to ``ACCURACY_TOL``
percentage points. The fine-tuning is kept to 4 steps: at its lr
the training is chaotic, and after 16 steps rounding alone (1 thread against 2 in one process)
moves the weights by 38 % (relative), two processes against one by 0.8 %.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import sslight
from sslight.config.load import config_to_dict
from sslight.data.coco import TrainBatches
from sslight.engine.checkpoint import load_checkpoint
from sslight.engine.sync_batch_norm import convert_cpu_sync_batchnorm
from sslight.engine.trainer import pretrain
from sslight.evaluation import classifier as classifier_module
from sslight.evaluation.semi import semi_supervised
from sslight.weights.eval_backbone import load_eval_backbone, load_eval_head

WORKER = Path(__file__).with_name("ddp_eval_worker.py")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
CPU = torch.device("cpu")
WEIGHT_RTOL, WEIGHT_ATOL = 1e-5, 1e-6  # observed: 3e-9 (linear head), 1.5e-6 relative (BN)
STATS_ATOL = 1e-5  # observed: 1.9e-6 on a near-zero running mean of a tensor up to 1.6
ACCURACY_TOL = 1e-6  # percentage points: every validation image is classified alike
EVALUATIONS = {
    "knn": {"k": [1, 5], "monitor": False},
    "linear": {"epochs": 2, "batch_size": 16, "cached_features": True, "base_lr": 0.5},
    "semi": {"fractions": [0.25], "epochs": [2], "batch_size": 8, "base_lr": 0.5},
    "floors": False,
}
STAGES = ["pretrain", "knn", "linear", "semi_25"]


def _torchrun(cfg, tmp_path: Path) -> subprocess.CompletedProcess:
    config = tmp_path / f"{Path(cfg.output_dir).name}.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    command = [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        str(WORKER),
        str(config),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def _result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


class _Interrupted(Exception):
    pass


def _interrupt_semi_after_one_epoch(cfg, run_dir: Path, monkeypatch) -> None:
    """Fine-tune one of the two epochs in one process and stop, as a preempted job does."""
    real_save = classifier_module.save_checkpoint

    def save_then_stop(state, directory):
        real_save(state, directory)
        raise _Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(classifier_module, "save_checkpoint", save_then_stop)
        with pytest.raises(_Interrupted):
            head, _ = load_eval_head(cfg, run_dir)
            backbone = load_eval_backbone(cfg, run_dir, CPU)
            semi_supervised(backbone, cfg, 0.25, 2, run_dir, CPU, head)


def test_two_processes_score_the_evaluations_as_one_does(make_run, tmp_path, monkeypatch):
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    cfg = make_run(one_dir, eval=EVALUATIONS, stages=STAGES)
    pretrain(cfg)  # both runs evaluate these very weights
    shutil.copytree(one_dir, two_dir)
    two_cfg = cfg.model_copy(update={"output_dir": str(two_dir)})
    _interrupt_semi_after_one_epoch(two_cfg, two_dir, monkeypatch)  # two processes resume it

    one = sslight.run(cfg)
    done = _torchrun(two_cfg, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    two = _result(two_dir)

    assert all(two["stages"][stage]["status"] == "done" for stage in STAGES)
    assert {k: two[k] for k in one if k.startswith("knn_")} == {
        k: one[k] for k in one if k.startswith("knn_")
    }
    for key in ("linear_top1", "linear_top5", "linear_top1_last", "semi_25_top1", "semi_25_top5"):
        assert abs(two[key] - one[key]) <= ACCURACY_TOL, key
    for stage in ("linear", "semi_25"):
        a = load_checkpoint(one_dir / "checkpoints" / stage)
        b = load_checkpoint(two_dir / "checkpoints" / stage)
        assert a["epoch"] == b["epoch"] == 2
        differing = [
            k
            for k in a["model"]
            if not torch.allclose(
                a["model"][k],
                b["model"][k],
                rtol=WEIGHT_RTOL,
                atol=STATS_ATOL if ".running_" in k else WEIGHT_ATOL,
            )
        ]
        assert not differing, f"{stage}: {differing[:5]}"
    pretrained = dict(load_eval_backbone(cfg, one_dir, CPU).named_parameters())
    tuned = load_checkpoint(two_dir / "checkpoints" / "semi_25")["model"]
    moved = max((tuned[f"features.{k}"] - v).abs().max().item() for k, v in pretrained.items())
    assert moved > 1000 * WEIGHT_ATOL  # fine-tuning moved the network far more than that
    assert (two_dir / "semi_25_subset.txt").read_text() == (
        one_dir / "semi_25_subset.txt"
    ).read_text()
    assert not list(two_dir.rglob("*.tmp"))


@pytest.mark.skipif(not FASHION_MNIST.exists(), reason=f"{FASHION_MNIST} missing")
@pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
def test_two_processes_train_and_evaluate_detection(make_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SSLIGHT_DATA_DIR", str(tmp_path / "datasets"))
    detection = {
        "synthetic_canvas_size": 64,
        "synthetic_images": [8, 3],
        "max_iters": 2,
        "batch_size": 4,
        "steps": [1],
        "warmup_iters": 1,
        "min_size_train": [64],
        "min_size_test": 64,
        "max_size": 64,
        "rpn_batch_size_per_image": 32,
        "roi_batch_size_per_image": 32,
        "rpn_proposals_test": 50,
        "detections_per_image": 10,
    }
    run_dir = tmp_path / "det"
    cfg = make_run(run_dir, eval={"detection": detection}, stages=["pretrain", "detection"])
    done = _torchrun(cfg, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    result = _result(run_dir)
    assert result["stages"]["detection"]["status"] == "done"
    assert all(0 <= result[f"detection_box_{k}"] <= 100 for k in ("ap", "ap50", "ap75"))
    lines = (run_dir / "detection_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]  # one writer
    assert load_checkpoint(run_dir / "checkpoints" / "detection")["iteration"] == 2


def _batch_norm_worker(rank: int, world: int, init_file: str, images, out) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        norm = convert_cpu_sync_batchnorm(_seeded_norm())
        half = images.chunk(world)[rank].requires_grad_(True)
        normed = norm(half)
        (normed * _loss_weights(images).chunk(world)[rank]).sum().backward()
        weight_grad = norm.weight.grad.clone()
        dist.all_reduce(weight_grad)
        out["normed"][rank].copy_(normed.detach())
        out["input_grad"][rank].copy_(half.grad)
        out["weight_grad"].copy_(weight_grad)
        out["running_var"].copy_(norm.running_var)
    finally:
        dist.destroy_process_group()


def _loss_weights(images: torch.Tensor) -> torch.Tensor:
    """A loss that weighs every output differently, so that every gradient path counts."""
    return torch.arange(1.0, 1 + images.numel()).view_as(images) / images.numel()


def _seeded_norm() -> torch.nn.BatchNorm2d:
    norm = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return norm


def test_cpu_sync_batch_norm_over_two_processes_is_batch_norm_over_the_whole_batch(tmp_path):
    """Forward, input and weight gradients (the weight's summed over the ranks) and running
    statistics: those of one BatchNorm2d on the concatenated batch."""
    import torch.multiprocessing as mp

    images = torch.randn(6, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    out = {
        "normed": torch.zeros(2, 3, 3, 4, 5),
        "input_grad": torch.zeros(2, 3, 3, 4, 5),
        "weight_grad": torch.zeros(3),
        "running_var": torch.zeros(3),
    }
    for tensor in out.values():
        tensor.share_memory_()
    args = (2, str(tmp_path / "init"), images, out)
    mp.start_processes(_batch_norm_worker, args=args, nprocs=2, start_method="spawn")

    norm, whole = _seeded_norm(), images.clone().requires_grad_(True)
    normed = norm(whole)
    (normed * _loss_weights(images)).sum().backward()
    torch.testing.assert_close(out["normed"].reshape_as(normed), normed.detach())
    torch.testing.assert_close(out["input_grad"].reshape_as(whole), whole.grad)
    torch.testing.assert_close(out["weight_grad"], norm.weight.grad)
    torch.testing.assert_close(out["running_var"], norm.running_var)


def test_detection_batches_hold_one_aspect_group_and_share_each_global_batch_out():
    groups = [0, 1] * 10
    whole = list(TrainBatches(20, 4, 9, seed=3, groups=groups))
    halves = [
        list(TrainBatches(20, 4, 9, seed=3, groups=groups, rank=r, world_size=2)) for r in (0, 1)
    ]
    assert all(len({groups[i] for i, _ in batch}) == 1 for batch in whole)
    assert [a + b for a, b in zip(*halves, strict=True)] == whole  # same images, same flips
    assert list(TrainBatches(20, 4, 9, seed=3, start=5, groups=groups)) == whole[5:]
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        TrainBatches(20, 4, 9, seed=3, world_size=3)


def test_a_run_rank_zero_refuses_stops_every_rank(make_run, tmp_path):
    run_dir = tmp_path / "refused"
    cfg = make_run(run_dir, stages=["knn"], init={"weights": str(tmp_path / "missing.pt")})
    done = _torchrun(cfg, tmp_path)
    assert done.returncode != 0
    assert "missing.pt" in done.stderr
    assert "rank 0 refused the run" in done.stderr  # rank 1 stopped too, without waiting


def test_a_two_task_slurm_job_runs_linear_evaluation_data_parallel(
    slurm_cluster, make_run, tmp_path
):
    import cloudpickle
    import ddp_eval_worker  # tests/ is on sys.path under pytest
    import submitit

    cloudpickle.register_pickle_by_value(ddp_eval_worker)  # the job cannot import tests/
    linear = {"epochs": 1, "batch_size": 16, "cached_features": True}
    cfg = make_run(tmp_path / "run", eval={"linear": linear, "floors": False}, stages=STAGES[:3])
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(
        tasks_per_node=2, cpus_per_task=1, timeout_min=10, slurm_partition="debug"
    )
    job = executor.submit(ddp_eval_worker.run_rank, config_to_dict(cfg))
    rank0, rank1 = job.results()  # one per task; raises if a task failed
    assert all(rank0["stages"][stage]["status"] == "done" for stage in STAGES[:3])
    assert 0 <= rank0["linear_top1"] <= 100 and rank1 == {}
    assert load_checkpoint(tmp_path / "run" / "checkpoints")["world_size"] == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "linear")["epoch"] == 1
