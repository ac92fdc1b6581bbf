"""The option table: every subcommand's options parse in both spellings; errors, --version, a torch-free --help."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sarvit import __version__
from sarvit.cli import build_parser
from sarvit.options import ANALYSIS, COMMANDS, OPTIONS, Option, defaults, float_list, options_of, spellings

PARSER, SUBPARSERS = build_parser()
REQUIRED = ["--weights", "w.pth"]


def _value(option: Option) -> tuple[list[str], object]:
    """Command-line words for ``option`` and the value they must parse to (a switch's on-spellings: True)."""
    if option.switch:
        return [], True
    if option.choices:
        choice = next(c for c in option.choices if c != option.default) if len(option.choices) > 1 else option.choices[0]
        return [choice], choice
    if option.nargs == "+":
        return ["a.png", "b"], ["a.png", "b"]
    if option.type is float_list:
        return ["0.1,0.2"], [0.1, 0.2]
    if option.type in (int, float):
        return ["3"], option.type("3")
    if option.repeat:
        return ["some/value"], ["some/value"]
    return ["some/value"], "some/value"


CASES = [(command, option) for command in COMMANDS for option in options_of(command)]


@pytest.mark.parametrize("command,option", CASES, ids=[f"{c} --{o.name}" for c, o in CASES])
def test_every_option_parses_in_both_spellings(command, option):
    words, value = _value(option)
    long = [s for s in spellings(option) if s.startswith("--")]
    assert len(set(long)) == len(long), long
    assert f"--{option.name}" in long and f"--{option.name.replace('-', '_')}" in long
    parsed = []
    for spelling in long:
        args = PARSER.parse_args([command, spelling, *words])
        assert getattr(args, option.dest) == value, spelling
        for dest, also in option.sets.items():
            assert getattr(args, dest) == also
        parsed.append(vars(args))
    assert all(p == parsed[0] for p in parsed)
    for spelling in spellings(option, option.off) if option.off else ():
        assert getattr(PARSER.parse_args([command, spelling]), option.dest) is False, spelling


def test_a_repeatable_option_keeps_every_use():
    args = PARSER.parse_args(["train", "--reg", "tv", "--reg", "drloc:0.5"])
    assert args.reg == ["tv", "drloc:0.5"]


def test_parsers_hold_only_what_was_typed():
    assert vars(PARSER.parse_args(["train", "--epochs", "2"])) == {"command": "train", "epochs": 2}


def test_one_default_per_name():
    for dest in {option.dest for option in OPTIONS}:
        rows = [option for option in OPTIONS if option.dest == dest]
        assert len({repr(row.default) for row in rows}) == 1, dest
    shared = ("weights", "input_size", "batch_size", "data_set", "data_path", "output_dir", "device", "seed",
              "num_workers")
    for dest in shared:
        assert len({repr(defaults(command)[dest]) for command in COMMANDS if dest in defaults(command)}) == 1, dest
        assert all(dest in defaults(command) for command in ("train", "eval", *ANALYSIS)), dest
    assert defaults("analyze")["batch_size"] == defaults("train")["batch_size"] == 64


def test_resume_is_a_training_option_only():
    assert PARSER.parse_args(["train", "--resume", "r.pth"]).resume == "r.pth"
    for command in ("eval", "segment-eval", "visualize", "analyze"):
        assert "resume" not in {option.dest for option in options_of(command)}
        assert "weights" in {option.dest for option in options_of(command)}


def _sarvit(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sarvit", *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_unknown_option_shows_the_subcommands_usage(command):
    result = _sarvit(command, "--bogus")
    assert result.returncode == 2
    assert result.stderr == (f"sarvit {command}: error: unrecognized arguments: --bogus\n"
                             f"run 'sarvit {command} --help' for its options\n")


def test_missing_weights_shows_the_subcommands_usage():
    result = _sarvit("segment-eval")
    assert result.returncode == 2 and result.stderr.startswith("sarvit segment-eval: error: ")
    assert "required: --weights" in result.stderr.splitlines()[0]


def test_a_misspelt_option_gets_the_nearest_one():
    result = _sarvit("train", "--resme", "x")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == ("sarvit train: error: unrecognized arguments: --resme (did you mean "
                                             "--resume?) x")


def test_version_and_help_groups():
    result = _sarvit("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"sarvit {__version__}"
    help_text = _sarvit("train", "--help").stdout
    assert "\nexperiment:" in _sarvit("experiment", "--help").stdout
    for room in ("run:", "data:", "model:", "SAR (", "optimisation (DeiT):", "augmentation (DeiT):"):
        assert f"\n{room}" in help_text, room
    assert "\nanalysis:" in _sarvit("visualize", "--help").stdout


def test_import_sarvit_registers_timm_models_without_import_hooks():
    """``import sarvit`` imports its models (hence timm): arvit_base is registered, no finder is left behind."""
    code = ("import sys\n"
            "finders = list(sys.meta_path)\n"
            "import sarvit, timm\n"
            "assert sys.meta_path == finders, sys.meta_path\n"
            "assert 'sarvit_cli' not in sys.modules  # the library never imports the launcher\n"
            "print(timm.is_model('arvit_base'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_experiment_scales_match_the_grids():
    from sarvit.experiments.grids import SCALES

    assert next(option for option in OPTIONS if option.name == "scale").choices == SCALES
