"""mkdocs hook: the CLI reference, rendered from the option table (:mod:`sarvit_cli.table`).

A page holding the line ``<!-- sarvit-cli-reference -->`` gets it replaced by one section per command, so the
page says what ``sarvit <command> --help`` says and cannot drift from the parser.
"""
from __future__ import annotations

import re
from typing import Any

from sarvit_cli import table

MARKER = "<!-- sarvit-cli-reference -->"


def _escaped(text: str) -> str:
    """``text`` safe in a Markdown table cell; code spans (between backticks) are left as written."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = (parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    .replace("*", r"\*").replace("_", r"\_"))
    return "`".join(parts).replace("|", r"\|")


def _flags(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{name if name.startswith('-') else '--' + name}`" for name in names)


def _value(option: table.Option) -> str:
    if option.switch:
        return ""
    if option.choices:
        shown = "`" + "` \\| `".join(map(str, option.choices)) + "`"
    else:
        shown = f"`{option.metavar or option.dest.upper()}`"
    if option.nargs == "+":
        shown += " …"
    return shown + (" (repeatable)" if option.repeat else "")


def _default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return "`" + ",".join(map(str, value)) + "`"
    return f"`{value}`"


def render_cli_reference() -> str:
    """Markdown: per command its description, positional arguments and option rows grouped by room."""
    lines: list[str] = []
    for name, command in table.COMMANDS.items():
        lines += [f"## sarvit {name}", "", _escaped(command.description), ""]
        if command.required:
            lines += ["Required: " + _flags(tuple(dest.replace("_", "-") for dest in command.required)) + ".", ""]
        for dest, _, metavar, help_text in command.positional:
            lines += [f"Positional: `{metavar}`, {_escaped(help_text)}.", ""]
        if command.passthrough:
            lines += ["Every word after `--` is passed on unchanged.", ""]
        rows = table.options_of(name)
        for room in table.ROOMS:
            in_room = [option for option in rows if option.room == room]
            if not in_room:
                continue
            lines += [f"### {name}: {_escaped(room)}", "", "| option | value | default | meaning |",
                      "|---|---|---|---|"]
            for option in in_room:
                flags = _flags((option.name, *option.aliases))
                if option.off:
                    flags += "; off: " + _flags(option.off)
                lines.append(f"| {flags} | {_value(option)} | {_default(option.default)} | "
                             f"{_escaped(option.help)} |")
            lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """mkdocs event: fill the marker of the page that holds it."""
    if MARKER not in markdown:
        return markdown
    return re.sub(re.escape(MARKER), lambda _: render_cli_reference(), markdown)
