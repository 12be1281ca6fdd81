"""``python -m benchmarks.run [--quick] [--only NAME[,NAME]] [--out DIR] [--threads N]``

Runs the benchmark families and writes ``<out>/<device>.json`` (the numbers) and
``<out>/<device>.md`` (the tables); ``--only`` updates those families in an existing JSON.
``--quick`` runs every family for an iteration or two on tiny inputs (a smoke test, no numbers).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

FAMILIES = (
    "orchestration",
    "augment",
    "imagenet_views",
    "lightly_step",
    "flops",
    "tuning",
    "train_step",
    "compile",
    "gpu",
)
MODULES = {"compile": ("tuning", "run_compile")}  # families living in another family's module
DEFAULT_OUT = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def run_family(name: str, quick: bool, threads: int | None, device: str) -> dict[str, Any]:
    module_name, function = MODULES.get(name, (name, "run"))
    run = getattr(importlib.import_module(f"benchmarks.{module_name}"), function)
    if name == "train_step":
        return run(quick=quick, device=device, threads=threads)
    return run(quick=quick, threads=threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1-2 iterations per family")
    parser.add_argument("--only", help=f"comma-separated families of: {', '.join(FAMILIES)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: every core)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if visible")
    args = parser.parse_args(argv)
    names = FAMILIES if not args.only else tuple(n.strip() for n in args.only.split(","))
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.exit(2, f"benchmarks: unknown family {unknown[0]!r}; choose from {FAMILIES}\n")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "benchmarks: --device cuda but no CUDA device is visible\n")

    path = args.out / f"{device}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() and args.only else {}
    results.setdefault("families", {})
    for name in names:
        print(f"benchmarks: {name} ...", flush=True)
        start = time.perf_counter()
        results["families"][name] = run_family(name, args.quick, args.threads, device)
        results["families"][name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"benchmarks: {name} done in {time.perf_counter() - start:.0f} s", flush=True)
        markdown = save(results, path, args.quick)  # after each family: an interrupted run keeps
    print(markdown)  # what it measured
    print(f"benchmarks: wrote {path} and {path.with_suffix('.md')}")
    return 0


def save(results: dict[str, Any], path: Path, quick: bool) -> str:
    """Write the JSON and its Markdown; return the Markdown."""
    from benchmarks.report import write_report

    results["machine"] = machine()
    results["quick"] = quick
    results["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    markdown = write_report(results, path.with_suffix(".md"))  # adds results["targets"]
    path.write_text(json.dumps(results, indent=2) + "\n")
    return markdown


if __name__ == "__main__":
    sys.exit(main())
