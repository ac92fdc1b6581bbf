"""The ``sarvit`` console script: answers at once what the option table alone can answer, hands the rest on.

``import sarvit`` imports torch and timm (it registers sarvit's timm models), which takes seconds; this package,
shipped in the same distribution, imports neither, nor the ``sarvit`` package: ``sarvit``, ``sarvit --help``,
``sarvit --version``, ``sarvit <command> --help`` and argument errors are answered from the table
(:mod:`sarvit_cli.table`, parsed by :mod:`sarvit_cli.parser`), and every command line that parses is run by
:func:`sarvit.cli.run`. ``python -m sarvit`` parses with the same parser, so both answer alike.
"""
from __future__ import annotations

from typing import Optional

__all__ = ["main"]


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the ``sarvit`` script: parse (help, version and bad arguments exit here), then run."""
    from .parser import parse

    args = parse(argv)
    from sarvit.cli import run  # the first import of torch, once there is a command to run

    return run(args)
