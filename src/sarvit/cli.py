"""`sarvit` command: parsers built from the option table (:mod:`sarvit.options`), each command run in its room.

The parsers are built from the option table alone; ``import sarvit`` itself imports torch and timm (it registers
sarvit's timm models), and a command's room (``sarvit.train.commands``, ...) is imported when it runs. Library
errors name Python arguments; :func:`flag_message` turns them into this command's flags.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from typing import Optional

from . import __version__
from .errors import SarvitError
from .option_parser import HelpFormatter, add_options
from .options import COMMANDS, LAYERED, OPTIONS, Option, check_values, defaults


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
        command.error(f"unrecognized arguments: {_unknown(command, unknown)}")
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


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
