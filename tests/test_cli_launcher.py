"""The ``sarvit`` script (:mod:`sarvit_cli`): help, version and argument errors without torch, the same answers
as ``python -m sarvit``, and every other command line handed on to :func:`sarvit.cli.run`."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sarvit_cli.table import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "COLUMNS": "100"}  # argparse wraps help to the terminal's width
HELP_LINES = [["--help"], ["--version"]] + [[command, "--help"] for command in COMMANDS]

# Each command line in turn: stdout, stderr and exit status as JSON, then the sarvit/torch modules it loaded.
_ANSWERS = """
import contextlib, io, json, sys
from {module} import main
answers = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as stop:
            status = stop.code
    answers.append([out.getvalue(), err.getvalue(), status or 0])
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "timm", "sarvit", "numpy"))
print(json.dumps({{"answers": answers, "loaded": loaded}}))
"""


def _answers(module: str, lines: list[list[str]]) -> dict:
    result = subprocess.run([sys.executable, "-c", _ANSWERS.format(module=module), json.dumps(lines)],
                            capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_help_version_and_bad_arguments_load_no_torch():
    lines = HELP_LINES + [[], ["train", "--bogus"], ["segment-eval"], ["train", "--epochs", "many"]]
    found = _answers("sarvit_cli", lines)
    assert found["loaded"] == []
    answers = dict(zip(map(tuple, lines), found["answers"]))
    assert answers[("--version",)][0].startswith("sarvit ") and answers[("--version",)][2] == 0
    assert answers[("train", "--help")][0].startswith("usage: sarvit train [-h]")
    assert answers[()][1].startswith("usage: sarvit [-h] [--version] COMMAND ...") and answers[()][2] == 2
    assert answers[("train", "--bogus")][1:] == [
        "sarvit train: error: unrecognized arguments: --bogus\nrun 'sarvit train --help' for its options\n", 2]
    assert "required: --weights" in answers[("segment-eval",)][1] and answers[("segment-eval",)][2] == 2
    assert answers[("train", "--epochs", "many")][1].startswith(
        "sarvit train: error: argument --epochs: invalid int value: 'many'")


def test_the_launcher_answers_as_python_m_sarvit():
    """Byte for byte, for the top level and every command (and the same exit status, 0)."""
    launcher = _answers("sarvit_cli", HELP_LINES)["answers"]
    full = _answers("sarvit.cli", HELP_LINES)
    assert "torch" in full["loaded"]  # the comparison is with the full command line, which imports torch
    for argv, mine, theirs in zip(HELP_LINES, launcher, full["answers"]):
        assert mine == theirs, argv
        assert mine[2] == 0 and mine[0], argv


def test_a_command_is_run_by_sarvit_cli():
    """Past the parser, the launcher hands the namespace on: a library error comes back as one line, exit 2."""
    result = subprocess.run([sys.executable, "-c", "import sys; from sarvit_cli import main; sys.exit(main())",
                             "eval", "--weights", str(ROOT / "no-such-checkpoint.pth"), "--device", "cpu"],
                            capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("sarvit eval: error: ") and len(result.stderr.splitlines()) == 1
    assert "no-such-checkpoint.pth" in result.stderr


def test_the_console_script_is_the_launcher():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"sarvit": "sarvit_cli:main"}
    assert "sarvit_cli" in project["tool"]["setuptools"]["packages"]["find"]["include"]


def test_version_is_the_distributions():
    from importlib import metadata

    from sarvit import __version__

    found = _answers("sarvit_cli", [["--version"]])["answers"][0]
    assert found == [f"sarvit {metadata.version('sarvit')}\n", "", 0]
    assert metadata.version("sarvit") == __version__
