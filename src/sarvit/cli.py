"""`sarvit` command: a thin layer that hands each subcommand to its room.

Subcommands register themselves: ``sarvit.train.commands.register`` adds ``train`` and ``eval``,
``sarvit.analysis.commands.register`` adds ``segment-eval``, ``visualize`` and ``analyze``,
``sarvit.experiments.commands.register`` adds ``experiment``. Each sets ``run`` (a function of the
parsed namespace returning an exit code) as a parser default.
"""
from __future__ import annotations

import argparse
import sys

from .errors import SarvitError


def build_parser() -> argparse.ArgumentParser:
    from .analysis.commands import register as register_analysis
    from .experiments.commands import register as register_experiment
    from .train.commands import register as register_train

    parser = argparse.ArgumentParser(
        prog="sarvit",
        description="Spatial Attention-based Regularization (SAR) for Vision Transformers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_train(subparsers)
    register_analysis(subparsers)
    register_experiment(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except SarvitError as error:
        print(f"sarvit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sarvit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
