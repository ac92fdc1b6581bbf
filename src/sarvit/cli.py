"""`sarvit` command: each parsed command line run in its room.

The ``sarvit`` script is :func:`sarvit_cli.main`: it parses with :func:`sarvit_cli.parser.parse` (the option
table alone, no torch) and hands the result to :func:`run`; ``python -m sarvit`` is :func:`main`, the same parse
and run. ``import sarvit`` itself imports torch and timm (it registers sarvit's timm models), and a command's room
(``sarvit.train.commands``, ...) is imported when it runs. Library errors name Python arguments;
:func:`flag_message` turns them into this command's flags.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Optional

from sarvit_cli.parser import build_parser, parse
from sarvit_cli.table import COMMANDS, OPTIONS, Option

from .errors import SarvitError
from .options import check_values

__all__ = ["build_parser", "check_output_dir", "flag_message", "main", "parse_args", "run"]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse a command line (:func:`sarvit_cli.parser.parse`: bad arguments exit 2 with the subcommand's usage);
    ``args.run(args)`` runs it."""
    return _with_runner(parse(argv))


def _with_runner(args: argparse.Namespace) -> argparse.Namespace:
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


# Library keywords with no option of their own: the option that asks for them, by command (a clause naming a
# keyword its command has no option for is left out); Python names that differ from the option's dest.
_KEYWORD_FLAGS = {"new_head=True": {"train": "--finetune"}, "new_last_norm=True": {"train": "--finetune"}}
_DESTS = {"img_size": "input_size"}


def flag_message(message: str, command: str) -> str:
    """The library names Python arguments (``crop_scale: ...``, ``depth=2``, ``new_head=True``); the CLI says
    the flags (``--crop-scale: ...``, ``--depth 2``, ``--finetune``)."""
    flags: dict[str, Option] = {}
    for option in OPTIONS:  # the first row of a dest is its canonical flag (--data-path before --voc-path)
        if command in option.commands:
            flags.setdefault(option.dest, option)

    for word, by_command in _KEYWORD_FLAGS.items():
        if command not in by_command:
            message = re.sub(rf"[,;]? (or )?(to fine-tune, )?pass {re.escape(word)}[^;|)]*", "", message)

    def keyword(match: re.Match) -> str:
        name, value = _DESTS.get(match.group(1), match.group(1)), match.group(2)
        if match.group(0) in _KEYWORD_FLAGS:
            return _KEYWORD_FLAGS[match.group(0)][command]
        if name not in flags:
            return match.group(0)
        option = flags[name]
        return f"--{option.name}" if option.switch and value == "True" else f"--{option.name} {value}"

    argument, colon, rest = message.partition(":")
    argument = _DESTS.get(argument, argument)
    if colon and argument in flags:
        message = f"--{flags[argument].name}:{rest}"
    return re.sub(r"\b([a-z_]+)=([\w.-]+)", keyword, message)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command line (:func:`sarvit_cli.parser.parse`'s namespace): its values checked against the
    table, its room's function called; a :class:`SarvitError` is one line naming the flags, exit code 2."""
    _with_runner(args)
    try:
        given = {key: value for key, value in vars(args).items() if key not in ("run", "command")}
        vars(args).update(check_values(args.command, given))
        check_output_dir(getattr(args, "output_dir", None))
        return int(args.run(args) or 0)
    except SarvitError as error:
        print(f"sarvit {args.command}: error: {flag_message(str(error), args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sarvit {args.command}: interrupted", file=sys.stderr)
        return 130


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m sarvit ...``: the ``sarvit`` script's parse, then :func:`run`."""
    return run(parse(argv))


if __name__ == "__main__":
    sys.exit(main())
