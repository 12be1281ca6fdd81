"""``sslight``: run one config without the orchestrator.

    sslight run CONFIG [key=value ...]        pretrain, then evaluate (the stages of the config)
    sslight pretrain CONFIG [key=value ...]   the pretraining stage alone
    sslight export RUN_DIR [--out FILE]       the evaluated backbone as a torchvision/timm state
                                              dict + JSON sidecar (default RUN_DIR/export/)

Exit codes: 0 success, 2 bad input (one message naming the file, key and problem), 1 failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sslight.config.load import ConfigError, load_config
from sslight.exit_codes import ExitCode

_DESCRIPTION = __doc__.split("\n\n")[0].replace("``", "")  # --help prints plain text, not reST


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslight", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "pretrain, then run the evaluation stages of the config"),
        ("pretrain", "the pretraining stage of one config"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("config", help="run config YAML (see experiments/)")
        command.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help="dotted overrides, e.g. train.epochs=1 output_dir=/tmp/run",
        )
        command.add_argument(
            "--print-config", action="store_true", help="print the resolved config as JSON and exit"
        )
    export = commands.add_parser(
        "export", help="write a run's evaluated backbone as a torchvision/timm state dict"
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run's output_dir")
    export.add_argument(
        "--out", help="state dict file (default RUN_DIR/export/backbone.pt); sidecar: FILE.json"
    )
    return parser


def _export(args: argparse.Namespace) -> int:
    from sslight.engine.checkpoint import CheckpointError
    from sslight.weights.export import export_run

    try:
        out = export_run(args.run_dir, args.out)
    except (ConfigError, CheckpointError) as err:
        print(f"sslight: error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(json.dumps({"backbone": str(out), "sidecar": str(out.with_suffix(".json"))}))
    return ExitCode.OK


def _bad_input(config: str, err: Exception) -> int:
    from sslight.data.sources import DataRootError

    where = f"{config}: data.root: " if isinstance(err, DataRootError) else ""
    print(f"sslight: error: {where}{err}", file=sys.stderr)
    return ExitCode.BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # overrides may follow flags
    if args.command == "export":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _export(args)
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    from sslight.data.sources import DataRootError
    from sslight.engine.checkpoint import CheckpointError

    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(json.dumps(cfg.model_dump(mode="json"), indent=2))
            return ExitCode.OK
        if args.command == "run":
            from sslight.pipeline import run

            result = run(cfg)
        else:
            from sslight.engine.trainer import pretrain

            result = pretrain(cfg)
    except (ConfigError, DataRootError, CheckpointError) as err:
        return _bad_input(args.config, err)
    except KeyboardInterrupt:
        print("sslight: interrupted; rerun the same command to resume", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as err:
        cause = err.__cause__  # a stage of `sslight run` wraps what it raised
        if isinstance(cause, (ConfigError, DataRootError, CheckpointError)):
            return _bad_input(args.config, cause)
        logging.getLogger("sslight").exception("run failed")
        print(f"sslight: failed: {type(err).__name__}: {err}", file=sys.stderr)
        return ExitCode.FAILURE
    print(json.dumps(result, indent=2, sort_keys=True))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
