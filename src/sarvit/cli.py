"""`sarvit` command: parsers built from the option table (:mod:`sarvit.options`), each command run in its room.

Building the parsers imports neither torch nor timm, so ``--help``, ``--version`` and argument errors answer
at once; a command's room (``sarvit.train.commands``, ``sarvit.analysis.commands``) is imported when it runs.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from typing import Optional

from . import __version__
from .errors import SarvitError
from .options import COMMANDS, LEARN, HelpFormatter, add_options, check_output_dir, check_values, defaults


class _Parser(argparse.ArgumentParser):
    """An argument error is its one line first, then where to read more (not 35 lines of usage before it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\nrun '{self.prog} --help' for its options\n")


def _unknown(command: argparse.ArgumentParser, unknown: list[str]) -> str:
    """``--resum (did you mean --resume?)``: each unknown option with the nearest one the command has."""
    names = [option[2:] for option in command._option_string_actions if option.startswith("--")]
    words = []
    for token in unknown:
        near = (difflib.get_close_matches(token.split("=", 1)[0][2:], names, n=1, cutoff=0.75)
                if token.startswith("--") else [])
        words.append(f"{token} (did you mean --{near[0]}?)" if near else token)
    return " ".join(words)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``sarvit`` parser and its subcommand parsers by name."""
    parser = _Parser(
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

    ``train`` and ``eval`` get only what was typed (``sarvit.train.config`` layers the defaults); the
    other commands get the table's defaults filled in.
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
        command.error(f"unrecognized arguments: {_unknown(command, unknown)}")
    missing = [f"--{name.replace('_', '-')}" for name in COMMANDS[args.command].required if not hasattr(args, name)]
    if missing:
        command.error(f"the following arguments are required: {', '.join(missing)}")
    if args.command not in LEARN:
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
