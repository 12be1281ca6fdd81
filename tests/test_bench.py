"""The benchmark suite's quick path, family by family (1-2 iterations on tiny inputs), so the
benchmark code keeps working; no timing is asserted."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import (
    augment,
    flops,
    gpu,
    gpu_views,
    imagenet_views,
    lightly_step,
    orchestration,
    run,
    train_step,
    tuning,
)
from benchmarks.common import GEOMETRIES
from benchmarks.report import markdown

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # lightly


def _is_comparison(entry: dict) -> None:
    assert entry["ours"] > 0 and entry["lightly"] > 0
    assert entry["ratio"] == pytest.approx(entry["ours"] / entry["lightly"], rel=0.02)
    assert entry["met"] == (entry["ratio"] >= entry["target"])


def test_orchestration_registers_the_grid_and_reads_status():
    result = orchestration.run(quick=True)
    grid, status = result["grid_1000_cells"], result["status_10000_runs"]
    assert grid["cells"] == 8 and grid["met"] == (grid["seconds"] < grid["target"])
    assert status["runs"] == 200 and status["seconds"] > 0


def test_augment_compares_with_lightly_transform():
    pytest.importorskip("lightly")
    result = augment.run(quick=True)
    _is_comparison(result["augment_vs_lightly/dino_32px"])


def test_imagenet_views_decodes_jpegs_on_both_sides(tmp_path, monkeypatch):
    pytest.importorskip("lightly")
    monkeypatch.setenv("SSLIGHT_BENCH_CACHE", str(tmp_path))
    result = imagenet_views.run(quick=True)
    entry = result["imagenet_views_vs_lightly/dino_sslight"]
    _is_comparison(entry)
    assert entry["peak_rss_mib"]["ours"] > 0 and entry["peak_rss_mib"]["lightly"] > 0
    assert entry["peak_rss_mib"]["ours"] >= entry["views_rss_mib"]["ours"] >= 0
    files = sorted((tmp_path / f"imagenet_views-v{imagenet_views.VERSION}-8").glob("train/*/*"))
    assert len(files) == 8 and all(f.suffix == ".jpg" for f in files)
    assert "imagenet_views" in run.FAMILIES


def test_lightly_step_trains_both_sides():
    pytest.importorskip("lightly")
    result = lightly_step.run(quick=True, threads=1)
    _is_comparison(result["train_step_vs_lightly/dino_mobilenet_v2_32px"])


def test_lightly_side_is_lightly_dino_example():
    pytest.importorskip("lightly")
    step = lightly_step.LightlyStep("resnet18", torch.device("cpu"), momentum=0.5)
    teacher_before = step.model.teacher_head.layers[0].weight.clone()
    views = [torch.randn(4, 3, 32, 32)] * 2 + [torch.randn(4, 3, 16, 16)] * 2
    assert math.isfinite(step(views, torch.zeros(4, dtype=torch.long)))
    assert not torch.equal(teacher_before, step.model.teacher_head.layers[0].weight)  # EMA moved


def test_train_step_in_a_fresh_process():
    result = train_step.run(quick=True, threads=1)
    entry = result["configs"]["dino_mobilenet_v2_32px"]
    assert "error" not in entry, entry
    assert entry["images_per_s"] > 0 and entry["peak_rss_mib"] > 0
    assert entry["channels_last"] is True  # the runtime rule for MobileNetV2 on CPU


def test_flops_counts_the_step():
    result = flops.run(quick=True, threads=1)
    step = result["steps"]["dino_mobilenet_v2_32px"]
    assert step["gflop_per_step"] > 0 and step["fraction_of_peak"] > 0


def test_tuning_measures_channels_last():
    result = tuning.run(quick=True, threads=1)
    entry = result["channels_last"]["mobilenet_v2"]
    assert entry["rule_says"] is True and entry["speedup"] > 0


def test_gpu_skips_without_cuda_and_its_logic_runs_on_cpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the benchmark would run for real")
    assert "skipped" in gpu.run(quick=True)
    assert "no CUDA device" in capsys.readouterr().out
    result = gpu.measure("cpu", quick=True, compile=False)
    assert set(result["steps"]) == {"dino_vit_tiny_32px", "dino_mobilenet_v2_32px"}
    assert all(step["mfu"] > 0 for step in result["steps"].values())


def test_gpu_views_logic_runs_on_cpu(tmp_path, monkeypatch):
    """The loader with views in the workers and in the training process, alone and with the
    DINO step (on a CUDA machine the gpu family runs it with the views on the GPU)."""
    monkeypatch.setenv("SSLIGHT_BENCH_CACHE", str(tmp_path))
    result = gpu_views.measure("cpu", quick=True)
    for where in ("views_in_workers", "views_in_device"):
        rates = result[where]
        assert rates["loading_images_per_s"] > 0
        assert rates["dino_mobilenet_v2_32px_images_per_s"] > 0


def test_run_writes_json_and_markdown(tmp_path):
    assert run.main(["--quick", "--only", "orchestration,gpu", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "cpu.json").read_text())
    assert set(results["families"]) == {"orchestration", "gpu"}
    assert "orchestration/status_10000_runs" in results["targets"]
    text = (tmp_path / "cpu.md").read_text()
    assert text == markdown(results) + "\n" and "## Targets" in text
    # --only keeps the other families of an existing file
    assert run.main(["--quick", "--only", "gpu", "--out", str(tmp_path)]) == 0
    assert "orchestration" in json.loads((tmp_path / "cpu.json").read_text())["families"]


def test_run_rejects_unknown_family(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--only", "nope", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown family 'nope'" in capsys.readouterr().err


def test_compile_switch_wraps_backbones_only_and_keeps_checkpoint_keys():
    from sslight.engine.runtime import Runtime, compile_backbones

    cfg = train_step.bench_config(
        "dino", "resnet18", GEOMETRIES["32px"], 4, compile=True, joint_probe=False
    )
    assert Runtime.from_config(cfg.train, cfg.backbone).compile is True
    method = train_step.TrainStep(cfg).method  # built as the trainer builds it
    keys = set(method.student.state_dict())
    assert method.student.backbone._compiled_call_impl is not None  # compiled lazily, on first use
    assert method.teacher.backbone._compiled_call_impl is not None
    assert method.student.head._compiled_call_impl is None
    assert set(method.student.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
    compile_backbones(method)  # idempotent
