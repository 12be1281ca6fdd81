"""``orchestrate``: grids of runs over executors, a registry, tracking and reports."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrate", description=__doc__)
    parser.add_argument("--version", action="version", version="sslight-lab 0.1.0")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
