"""The speed switches, measured here rather than assumed: channels_last per backbone (the
default each backbone's spec declares, ``BackboneSpec.channels_last``) and ``train.compile``
(torch.compile of the backbones), each as interleaved rounds of the same DINO step on a fixed
32 px batch."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import GEOMETRIES, interleaved, median, set_threads, timed
from benchmarks.flops import fixed_batch
from benchmarks.train_step import BACKBONE_NAMES, TrainStep, bench_config
from sslight.models.backbones import backbone_spec


def _rate(step: TrainStep, views: list, labels: Any) -> float:
    """Images/s of one step (the steps are warm: built and run before the rounds)."""
    return labels.shape[0] / timed(lambda: step(views, labels))


def channels_last(backbone: str, batch: int, rounds: int) -> dict[str, Any]:
    """Images/s of the step with channels_last on and off (compute only, no loader)."""
    geo = GEOMETRIES["32px"]
    steps = {
        setting: TrainStep(bench_config("dino", backbone, geo, batch, channels_last=setting))
        for setting in ("on", "off")
    }
    views, labels = fixed_batch(bench_config("dino", backbone, geo, batch))
    for step in steps.values():
        step(views, labels)  # warm-up
    rates = interleaved(
        {name: (lambda s=step: _rate(s, views, labels)) for name, step in steps.items()}, rounds
    )
    speedup = median(rates["on"]) / median(rates["off"])
    return {
        "images_per_s_on": round(median(rates["on"]), 2),
        "images_per_s_off": round(median(rates["off"]), 2),
        "speedup": round(speedup, 3),
        "wins": speedup > 1.05,
        "rule_says": backbone_spec(backbone).channels_last,
    }


def compile_gain(backbone: str, batch: int, rounds: int) -> dict[str, Any]:
    """``train.compile`` on against off: first-step (compile) seconds and steady images/s."""
    geo = GEOMETRIES["32px"]
    eager = TrainStep(bench_config("dino", backbone, geo, batch))
    compiled = TrainStep(bench_config("dino", backbone, geo, batch, compile=True))
    views, labels = fixed_batch(bench_config("dino", backbone, geo, batch))
    start = time.perf_counter()
    compiled(views, labels)
    compiled(views, labels)  # the second step may recompile (dynamic shapes, new epoch)
    first = time.perf_counter() - start
    eager(views, labels)  # warm-up
    rates = interleaved(
        {
            "compiled": lambda: _rate(compiled, views, labels),
            "eager": lambda: _rate(eager, views, labels),
        },
        rounds,
    )
    speedup = median(rates["compiled"]) / median(rates["eager"])
    return {
        "first_two_steps_s": round(first, 1),
        "images_per_s_compiled": round(median(rates["compiled"]), 2),
        "images_per_s_eager": round(median(rates["eager"]), 2),
        "speedup": round(speedup, 3),
        "wins": speedup > 1.05,
    }


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    threads = set_threads(threads)
    batch, rounds = (2, 1) if quick else (16, 3)
    backbones = BACKBONE_NAMES[:1] if quick else BACKBONE_NAMES
    result: dict[str, Any] = {
        "threads": threads,
        "channels_last": {b: channels_last(b, batch, rounds) for b in backbones},
    }
    return result


def run_compile(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """``train.compile`` on this machine (the ``compile`` family; minutes on a CPU)."""
    threads = set_threads(threads)
    batch, rounds = (2, 1) if quick else (16, 3)
    try:
        return {"threads": threads, "mobilenet_v2": compile_gain("mobilenet_v2", batch, rounds)}
    except Exception as err:  # no compiler, an unsupported op: say so, keep the rest
        return {"threads": threads, "error": f"{type(err).__name__}: {err}"[:500]}
