"""argparse parsers built from the option table (:mod:`sarvit.options`); standard library only, like the table.

Parsers carry no defaults (``argparse.SUPPRESS``): the namespace holds what the user typed, and
:func:`sarvit.options.defaults` gives the table's values (``train`` / ``eval`` layer them in
:func:`sarvit.train.config.resolve_run`).
"""
from __future__ import annotations

import argparse
from .options import COMMANDS, ROOMS, options_of, shown_default, spellings

__all__ = ["HelpFormatter", "add_options"]


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
