"""Benchmark JSON → Markdown: targets first, then one table per family."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def comparisons(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ``*_vs_lightly/*`` entry of every family."""
    found = {}
    for family in results.get("families", {}).values():
        for key, entry in family.items():
            if "_vs_lightly/" in key and isinstance(entry, dict):
                found[key] = entry
    return found


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the suite with its measurement: ``{"measured", "target", "met", "unit"}``."""
    rows = {
        key: {"measured": e["ratio"], "target": e["target"], "met": e["met"], "unit": "× lightly"}
        for key, e in comparisons(results).items()
        if "target" in e
    }
    orchestration = results.get("families", {}).get("orchestration", {})
    for key in ("grid_1000_cells", "status_10000_runs"):
        if key in orchestration:
            e = orchestration[key]
            rows[f"orchestration/{key}"] = {
                "measured": e["seconds"],
                "target": e["target"],
                "met": e["met"],
                "unit": "s (below)",
            }
    return rows


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _met(flag: bool) -> str:
    return "yes" if flag else "**no**"


def _imagenet_views(family: dict[str, Any]) -> list[str]:
    """The per-core images/s of each recipe on ImageNet-sized JPEGs, with peak RSS per worker."""
    entries = {k.split("/", 1)[1]: e for k, e in family.items() if "_vs_lightly/" in k}
    if not entries:
        return []
    lines = [
        f"## ImageNet-sized JPEGs, all 8 views of each, one core ({family.get('images')} images)",
        "",
        "Ours hands over uint8 views for the training device to normalise; the next columns add "
        "that normalisation on the same core, as when training on the CPU. Peak RSS of one "
        "worker process; in brackets what making the views added to the RSS of its imports "
        "(ours holds a whole batch's views, lightly one image's).",
        "",
    ]
    rows = [
        [
            name,
            e["ours"],
            e["lightly"],
            e["ratio"],
            e.get("ours_cpu_normalised", "–"),
            e.get("ratio_cpu_normalised", "–"),
            f"{e['peak_rss_mib']['ours']} ({e['views_rss_mib']['ours']})",
            f"{e['peak_rss_mib']['lightly']} ({e['views_rss_mib']['lightly']})",
        ]
        for name, e in entries.items()
    ]
    header = ["recipe", "ours images/s", "lightly images/s", "ratio"]
    header += ["ours + CPU normalise", "ratio", "ours peak MiB (views)", "lightly peak MiB (views)"]
    return lines + _table(header, rows)


def _gpu_views(views: dict[str, Any]) -> list[str]:
    """Loader images/s with the views made in the workers or on the GPU (data.views_device)."""
    if not views:
        return []
    lines = [
        f"Loading ImageNet-sized JPEGs ({views['workers']} workers, batch {views['batch_size']}):",
        "",
    ]
    rows = [[where, *entry.values()] for where, entry in views.items() if where.startswith("views")]
    step = next(k for k in views["views_in_workers"] if k != "loading_images_per_s")
    return lines + _table(["views made", "loading images/s", f"{step} (with loading)"], rows)


def markdown(results: dict[str, Any]) -> str:
    families = results.get("families", {})
    m = results.get("machine", {})
    lines = [
        f"# Benchmarks ({results.get('date', '?')})",
        "",
        f"Machine: {m.get('cores')} cores ({m.get('cpu')}), CUDA: {m.get('cuda') or 'none'}, "
        f"torch {m.get('torch')}, load average at the end {m.get('load_average')}."
        + (" Quick run (smoke test): the numbers mean nothing." if results.get("quick") else ""),
        "",
        "## Targets",
        "",
    ]
    goal = [
        [k, v["measured"], f"{v['target']} {v['unit']}", _met(v["met"])]
        for k, v in targets(results).items()
    ]
    lines += _table(["what", "measured", "target", "met"], goal)
    if comparisons(results):
        lines += ["## Side by side with lightly (interleaved rounds, medians)", ""]
        rows = [
            [k, e["ours"], e["lightly"], e["ratio"], e.get("unit", "")]
            for k, e in comparisons(results).items()
        ]
        lines += _table(["comparison", "ours", "lightly", "ratio", "unit"], rows)
    lines += _imagenet_views(families.get("imagenet_views", {}))
    train = families.get("train_step", {})
    if train.get("configs"):
        lines += [
            f"## Training throughput ({train['device']}, {train['threads']} threads, "
            "augmentation and loading included)",
            "",
        ]
        rows = []
        for key, e in train["configs"].items():
            memory = e.get("peak_rss_mib", e.get("peak_memory_mib", "-"))
            rows.append(
                [
                    key,
                    e.get("images_per_s", e.get("error")),
                    e.get("batch_size", "-"),
                    memory,
                    e.get("channels_last", "-"),
                ]
            )
        lines += _table(
            ["method_backbone_geometry", "images/s", "batch", "peak MiB", "channels_last"], rows
        )
    flops = families.get("flops", {})
    if flops.get("steps"):
        lines += [
            f"## FLOP efficiency (fp32 matmul peak {flops['matmul_peak_gflop_s']} GFLOP/s, "
            f"{flops['threads']} threads)",
            "",
        ]
        rows = [
            [
                k,
                e["gflop_per_step"],
                e["step_seconds"],
                e["achieved_gflop_s"],
                f"{e['fraction_of_peak']:.1%}",
            ]
            for k, e in flops["steps"].items()
        ]
        lines += _table(["step", "GFLOP/step", "s/step", "GFLOP/s", "of peak"], rows)
        if any(e["fraction_of_peak"] > 1 for e in flops["steps"].values()):
            lines += [
                "Above 100 %: the step used more cores than the matmul peak was measured on "
                "(oneDNN convolutions do not always keep to torch's thread count), or the peak "
                "was measured in a busy moment.",
                "",
            ]
    tuning = families.get("tuning", {})
    if tuning.get("channels_last"):
        lines += ["## channels_last and torch.compile (DINO step, 32 px, compute only)", ""]
        rows = [
            [
                f"channels_last/{b}",
                e["images_per_s_on"],
                e["images_per_s_off"],
                e["speedup"],
                _met(e["wins"]) if e["rule_says"] else ("yes" if not e["wins"] else "**no**"),
            ]
            for b, e in tuning["channels_last"].items()
        ]
        rows += [
            [
                f"compile/{b}",
                e["images_per_s_compiled"],
                e["images_per_s_eager"],
                e["speedup"],
                f"first steps {e['first_two_steps_s']} s",
            ]
            for b, e in families.get("compile", {}).items()
            if isinstance(e, dict)
        ]
        lines += _table(
            ["switch", "images/s on", "images/s off", "speedup", "runtime rule right"], rows
        )
        if families.get("compile", {}).get("error"):
            lines += [f"torch.compile failed: {families['compile']['error']}", ""]
    orchestration = families.get("orchestration", {})
    if orchestration.get("grid_1000_cells"):
        g, s = orchestration["grid_1000_cells"], orchestration["status_10000_runs"]
        lines += [
            "## Orchestration",
            "",
            f"- {g['cells']}-cell grid: expand {g['expand_s']} s + register "
            f"{g['register_s']} s = {g['seconds']} s (a fresh registry opens in "
            f"{g['open_fresh_registry_s']} s).",
            f"- `orchestrate status` over {s['runs']} runs ({s['active_runs']} running, "
            f"reconciled): {s['seconds']} s.",
            "",
        ]
    gpu = families.get("gpu", {})
    if gpu.get("skipped"):
        lines += ["## GPU", "", f"Skipped: {gpu['skipped']}.", ""]
    elif gpu.get("steps"):
        lines += [f"## GPU ({gpu['device']}, {gpu['precision']}, compile {gpu['compile']})", ""]
        rows = [
            [k, e["batch_size"], e["step_seconds"], e["achieved_gflop_s"], f"{e['mfu']:.1%}"]
            for k, e in gpu["steps"].items()
        ]
        lines += _table(["step", "batch", "s/step", "GFLOP/s", "MFU"], rows)
    lines += _gpu_views(gpu.get("views", {}))
    return "\n".join(lines)


def write_report(results: dict[str, Any], path: Path) -> str:
    """Add ``targets`` to ``results`` and write the Markdown next to the JSON; return it."""
    results["targets"] = targets(results)
    text = markdown(results)
    path.write_text(text + "\n")
    return text
