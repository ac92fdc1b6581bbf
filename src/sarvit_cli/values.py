"""What values the option table's rows take, and the check of one value (standard library only, like the table).

:mod:`sarvit_cli.table` gives each row a ``type`` and ``within`` (a :class:`Range` or :class:`Pattern`);
:func:`check_value` reads a value the way the command line reads it (a YAML ``"0.5"`` is ``0.5``, ``"no"`` is
``False``) and refuses what the row does not take, with :func:`expected` saying what it takes.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ["AT_LEAST_1", "DEVICE", "NON_NEGATIVE", "POSITIVE", "PROBABILITY", "Pattern", "Range", "check_value",
           "expected", "float_list"]


def float_list(text: str) -> list[float]:
    """``"0.9,0.999"`` or ``"0.9 0.999"`` -> ``[0.9, 0.999]``."""
    return [float(x) for x in text.replace(",", " ").split()]


@dataclass(frozen=True)
class Range:
    """The values a number may take: ``low <= value <= high`` (``<`` where the end is open; None: no bound)."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


class Pattern:
    """The strings a text option may take, as a regular expression and the words that describe them."""

    def __init__(self, regex: str, description: str) -> None:
        self.regex, self.description = re.compile(regex), description

    def __contains__(self, value: str) -> bool:
        return self.regex.fullmatch(str(value)) is not None

    def __str__(self) -> str:
        return self.description


PROBABILITY, NON_NEGATIVE, POSITIVE, AT_LEAST_1 = Range(0, 1), Range(0), Range(0, low_open=True), Range(1)
DEVICE = Pattern(r"auto|cpu|cuda(:\d+)?|mps", "cpu, cuda, cuda:N, mps or auto")


_TRUE, _FALSE = ("yes", "true", "on"), ("no", "false", "off")


def expected(option) -> str:
    """What a value of ``option`` must be, in words."""
    if option.switch:
        return "a boolean (true/false, yes/no, on/off)"
    if option.choices:
        return "one of " + ", ".join(map(str, option.choices))
    if isinstance(option.within, Pattern):
        return str(option.within)
    kind = {int: "an integer", float: "a finite number", float_list: "finite numbers"}.get(option.type, "text")
    return f"{kind} {option.within}" if option.within is not None else kind


def _number(option, value: Any, kind: Callable) -> Any:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        return kind(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    raise ValueError


def check_value(option, value: Any) -> Any:
    """``value`` as ``option`` takes it (a YAML string parsed as the command line would), or ValueError."""
    if value is None:  # unset, or "off" for a text option (--aa none is stored as None)
        if option.default is None or option.switch or option.type not in (int, float, float_list):
            return None
        raise ValueError
    if option.switch:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError
    if option.type is float_list:
        items = float_list(value) if isinstance(value, str) else [_number(option, v, float) for v in value]
    elif option.type in (int, float):
        items = [_number(option, value, option.type)]
    elif option.nargs == "+" or option.repeat:
        items = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(item, str) for item in items):
            raise ValueError
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        items = [str(value)]
    else:
        raise ValueError
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError
        if option.within is not None and item not in option.within:
            raise ValueError
        if option.choices and item not in option.choices:
            raise ValueError
    return items if option.type is float_list or option.nargs == "+" or option.repeat else items[0]
