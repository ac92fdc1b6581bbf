"""The ``sarvit`` parser, built from the option table (:mod:`sarvit_cli.table`); standard library only, like it.

:func:`parse` reads a command line as far as the table can: ``--help``, ``--version`` and argument errors are
answered here, without torch; :mod:`sarvit.cli` runs what it returns. Parsers carry no defaults
(``argparse.SUPPRESS``): the namespace holds what the user typed, and :func:`sarvit_cli.table.defaults` gives the
table's values (``train`` / ``eval`` layer them in :func:`sarvit.train.config.resolve_run`).
"""
from __future__ import annotations

import argparse
import difflib
import sys
from typing import Optional

from .table import COMMANDS, LAYERED, ROOMS, defaults, options_of, shown_default, spellings

__all__ = ["HelpFormatter", "add_options", "build_parser", "installed_version", "parse"]


def installed_version() -> str:
    """The installed distribution's version, from its metadata (no import of sarvit, hence of torch)."""
    from importlib import metadata

    try:
        return metadata.version("sarvit")
    except metadata.PackageNotFoundError:  # run from a source tree, not installed: the package's own number
        from sarvit import __version__

        return __version__


class _Version(argparse.Action):
    """``--version``: ``sarvit X.Y.Z`` on stdout, read when asked (argparse's own action wants it up front)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show program's version number and exit") -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser._print_message(f"sarvit {installed_version()}\n", sys.stdout)
        parser.exit()


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
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    for name, command in COMMANDS.items():
        commands[name] = subparsers.add_parser(
            name, help=command.help, description=command.description, formatter_class=HelpFormatter,
            epilog="Every option is also accepted with _ in place of - (--data_set, --drop_path, ...).")
        add_options(commands[name], name)
    return parser, commands


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """A command line as its namespace (``args.command`` names the subcommand). ``--help``, ``--version``, no
    command and bad arguments exit here (0, or 2 with the subcommand's usage).

    ``train`` and ``eval`` get only what was typed (``sarvit.train.config`` layers the defaults), as do
    ``pretrain``, ``knn`` and ``linear-probe`` (``sarvit.train.ssl.recipes``); the other commands get the table's
    defaults filled in.
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
    return args


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option by its table spellings only (its generated ``_``/``-`` twins are accepted, not listed)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = getattr(action, "shown", None)
        if not shown:
            return super()._format_action_invocation(action)
        metavar = self._format_args(action, action.dest.upper()) if action.nargs != 0 else ""
        return ", ".join(f"{spelling} {metavar}".rstrip() for spelling in shown)


class _StoreAndSet(argparse.Action):
    """Store the value and the row's ``sets`` (e.g. ``--voc-path DIR`` also sets ``data_set = "voc"``)."""

    def __init__(self, *args, sets: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sets = sets

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        for dest, value in self.sets.items():
            setattr(namespace, dest, value)


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``command``'s rows to ``parser``, one argument group per room; no defaults on the parser."""
    for dest, nargs, metavar, help in COMMANDS[command].positional:
        parser.add_argument(dest, nargs=nargs, metavar=metavar, help=help, default=argparse.SUPPRESS)
    used = {option.room for option in options_of(command)}
    groups = {room: parser.add_argument_group(room) for room in ROOMS if room in used}
    for option in options_of(command):
        group = groups[option.room]
        shown = option.help if option.default is None else f"{option.help} (default: {shown_default(option.default)})"
        common = dict(dest=option.dest, default=argparse.SUPPRESS)
        if option.switch:
            on = group.add_argument(*spellings(option), action="store_true", help=shown, **common)
            on.shown = _listed((option.name, *option.aliases))
            if option.off:
                off = group.add_argument(*spellings(option, option.off), action="store_false",
                                         help="turn off: " + option.help, **common)
                off.shown = _listed(option.off)
            continue
        kwargs = {key: getattr(option, key) for key in ("type", "choices", "metavar", "nargs")
                  if getattr(option, key) is not None}
        if option.sets:
            kwargs.update(action=_StoreAndSet, sets=option.sets)
        if option.repeat:
            kwargs.update(action="append")
        action = group.add_argument(*spellings(option), help=shown, **common, **kwargs)
        action.shown = _listed((option.name, *option.aliases))


def _listed(names: tuple[str, ...]) -> list[str]:
    return [name if name.startswith("-") else f"--{name}" for name in names]
