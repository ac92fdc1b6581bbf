"""`sarvit` command: parsers built from the option table (:mod:`sarvit.options`), each command run in its room.

Building the parsers imports neither torch nor timm, so ``--help``, ``--version`` and argument errors answer
at once; a command's room (``sarvit.train.commands``, ``sarvit.analysis.commands``) is imported when it runs.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional

from . import __version__
from .errors import SarvitError
from .option_parser import HelpFormatter, add_options
from .options import COMMANDS, LAYERED, check_values, defaults


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``sarvit`` parser and its subcommand parsers by name."""
    parser = argparse.ArgumentParser(
        prog="sarvit", description="Spatial Attention-based Regularization (SAR) for Vision Transformers.")
    parser.add_argument("--version", action="version", version=f"sarvit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    for name, command in COMMANDS.items():
        commands[name] = subparsers.add_parser(
            name, help=command.help, description=command.description, formatter_class=HelpFormatter,
            epilog="Every option is also accepted with _ in place of - (--data_set, --drop_path, ...).")
        add_options(commands[name], name)
    return parser, commands


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse a command line; ``args.run(args)`` runs it. Bad arguments exit 2 with the subcommand's usage.

    ``train`` and ``eval`` get only what was typed (``sarvit.train.config`` layers the defaults), as do
    ``pretrain``, ``knn`` and ``linear-probe`` (``sarvit.train.ssl.recipes``); the other commands get the table's defaults filled in.
    """
    parser, commands = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    tail = None
    if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].passthrough and "--" in argv:
        argv, tail = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        parser.exit(2)
    command = commands[args.command]
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    missing = [f"--{name.replace('_', '-')}" for name in COMMANDS[args.command].required if not hasattr(args, name)]
    if missing:
        command.error(f"the following arguments are required: {', '.join(missing)}")
    if args.command not in LAYERED:
        for dest, value in defaults(args.command).items():
            if not hasattr(args, dest):
                setattr(args, dest, value)
        for dest, nargs, _, _ in COMMANDS[args.command].positional:
            if not hasattr(args, dest):
                setattr(args, dest, None if nargs == "?" else [])
    if COMMANDS[args.command].passthrough:
        setattr(args, COMMANDS[args.command].passthrough, tail or [])
    module, function = COMMANDS[args.command].run.split(":")
    args.run = getattr(importlib.import_module(module), function)
    return args


def check_output_dir(path: Optional[str]) -> None:
    """``--output-dir`` names a folder this process can create or write into (nothing is created here)."""
    if not path:
        return
    folder = os.path.abspath(os.path.expanduser(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise SarvitError(f"--output-dir {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SarvitError(f"--output-dir {path}: cannot write there ({existing} is not writable)")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        given = {key: value for key, value in vars(args).items() if key not in ("run", "command")}
        vars(args).update(check_values(args.command, given))
        check_output_dir(getattr(args, "output_dir", None))
        return int(args.run(args) or 0)
    except SarvitError as error:
        print(f"sarvit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sarvit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
