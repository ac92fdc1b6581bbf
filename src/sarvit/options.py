"""The option table of the `sarvit` command (:mod:`sarvit_cli.table`, where the torch-free launcher reads it),
and the check of a configuration's values against it.

Every name of the table is re-exported here, so the rooms of sarvit read ``sarvit.options.OPTIONS``,
``defaults``, ``options_of``, ... as before; the table itself has one copy, in :mod:`sarvit_cli`.
"""
from __future__ import annotations

from typing import Any

from sarvit_cli.schema import ANALYSIS, LAYERED, ROOMS, Command, Option
from sarvit_cli.table import COMMANDS, OPTIONS, defaults, dest_of_spelling, options_of, shown_default, spellings
from sarvit_cli.values import Range, check_value, expected, float_list

from .errors import SarvitError

__all__ = ["ANALYSIS", "COMMANDS", "LAYERED", "OPTIONS", "ROOMS", "Command", "Option", "Range", "check_values",
           "defaults", "dest_of_spelling", "float_list", "options_of", "shown_default", "spellings"]


def check_values(command: str, values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """``values`` ({dest: value}) checked against ``command``'s rows: types, ranges, finite numbers, choices.

    Returns them as the options take them (YAML's ``"no"`` is ``False``, ``"0.5"`` is ``0.5``). Keys that are
    no option's dest pass unchanged. Raises :class:`SarvitError` naming the option, the value and what was
    expected; ``source`` (e.g. ``"--config run.yaml"``) says where the value came from.
    """
    rows: dict[str, Option] = {}
    for option in options_of(command):
        rows.setdefault(option.dest, option)
    checked = dict(values)
    for dest, value in values.items():
        option = rows.get(dest)
        if option is None:
            continue
        try:
            checked[dest] = check_value(option, value)
        except (ValueError, TypeError):
            where = f"{source}: " if source else ""
            raise SarvitError(f"{where}--{option.name} {value!r}: expected {expected(option)}") from None
    return checked
