"""The docs stay true: every `sarvit ...` command in README.md and docs/ parses with the real parser, the README
stays short, and the generated CLI reference lists every option of the table."""
from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from sarvit import cli, options

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
README_MAX_LINES = 220
# Commands the docs show failing on purpose: each must still be refused.
REJECTED = ({"train", "--bogus"},)


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _sarvit_commands(line: str) -> list[list[str]]:
    """The argument lists of every `sarvit` run in one shell line (`sarvit ...`, `python -m sarvit ...`,
    `torchrun ... -m sarvit ...`), each cut at the first shell operator (`&&`, `;`, `|`, ...)."""
    found, current = [], None
    words = _words(line)
    for i, word in enumerate(words):
        if current is not None and set(word) <= set(";&|<>()"):
            found.append(current)
            current = None
        elif current is not None:
            current.append(word)
        elif word == "sarvit" and (i == 0 or words[i - 1] == "-m" or set(words[i - 1]) <= set(";&|(")):
            current = []
    return found + ([current] if current is not None else [])


def _shell_lines(text: str):
    """(line number, logical line) of every shell code block, backslash continuations joined."""
    for block in SHELL_BLOCK.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        pending, start = "", first
        for offset, line in enumerate(block.group(1).splitlines()):
            if not pending:
                start = first + offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending = ""


def _inline_commands(text: str):
    """(line number, argument list) of every code span in the prose that is a `sarvit` command line."""
    prose = SHELL_BLOCK.sub(lambda block: "\n" * block.group(0).count("\n"), text)
    prose = re.sub(r"^```.*?^```", lambda block: "\n" * block.group(0).count("\n"), prose,
                   flags=re.MULTILINE | re.DOTALL)
    for span in CODE_SPAN.finditer(prose):
        words = span.group(1).split()
        if len(words) < 2 or words[0] != "sarvit" or words[1].endswith(":") or any(
                mark in span.group(1) for mark in ("<", "...", "…")):
            continue                        # a quoted message, or a placeholder (`sarvit <command>`, `sarvit ...`)
        yield text.count("\n", 0, span.start()) + 1, words[1:]


def _collect() -> list:
    cases = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(ROOT).as_posix()
        for number, line in _shell_lines(text):
            for argv in _sarvit_commands(line):
                cases.append(pytest.param(argv, False, id=f"{name}:{number}: sarvit {' '.join(argv)}"))
        for number, argv in _inline_commands(text):
            # a bare `sarvit eval` in prose names the command; only spans with options are full command lines
            cases.append(pytest.param(argv, len(argv) == 1, id=f"{name}:{number}: sarvit {' '.join(argv)}"))
    return cases


CASES = _collect()


def test_the_docs_hold_commands():
    assert len(CASES) > 50


@pytest.mark.parametrize("argv, name_only", CASES)
def test_every_command_parses(argv, name_only, capsys):
    if name_only:
        assert argv[0] in options.COMMANDS or argv[0] in ("--help", "--version"), f"no command {argv[0]!r}"
        return
    runs = [argv]
    if argv and argv[0] in options.COMMANDS and options.COMMANDS[argv[0]].passthrough and "--" in argv:
        runs.append(["train", *argv[argv.index("--") + 1:]])    # the words after -- go to every `sarvit train`
    refused = set(argv) in REJECTED
    for run in runs:
        try:
            cli.parse_args(run)
        except SystemExit as stop:
            assert stop.code == (2 if refused else 0), (
                f"`sarvit {' '.join(run)}` does not parse: {capsys.readouterr().err.strip()}")
        else:
            assert not refused, f"`sarvit {' '.join(run)}` is shown failing in the docs, but it parses"


def test_the_finder_sees_what_a_shell_runs():
    line = 'pip install -e . && sarvit train --epochs 2 # comment'
    assert _sarvit_commands(line) == [["train", "--epochs", "2"]]
    assert _sarvit_commands("torchrun --nproc_per_node=8 -m sarvit eval --weights x.pth | tee log") == [
        ["eval", "--weights", "x.pth"]]
    assert _sarvit_commands("ls src/sarvit; echo sarvit") == []


def test_a_renamed_flag_fails(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse_args(["train", "--no-such-flag"])
    assert stop.value.code == 2


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the detail into docs/"


def test_cli_reference_lists_every_option():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.on_page_markdown(f"# CLI\n\n{hook.MARKER}\n", page=None, config=None, files=None)
    assert hook.MARKER not in page
    for name in options.COMMANDS:
        heading = f"## sarvit {name}\n"
        section = page.split(heading, 1)[1].split("\n## sarvit ", 1)[0] if heading in page else page
        for option in options.options_of(name):
            for spelling in (option.name, *option.aliases, *option.off):
                flag = spelling if spelling.startswith("-") else f"--{spelling}"
                assert flag in section, f"{flag} of `sarvit {name}` is missing from the CLI reference"
