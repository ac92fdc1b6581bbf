"""Inputs that used to end in a traceback, the OOM killer or a file in the wrong place: each is one line, rc 2,
and a run refused before its first epoch leaves no folder behind."""
from __future__ import annotations

import pytest
import torch

from sarvit.cli import main
from test_train_common import one_cpu_thread, tiny_argv  # noqa: F401 (autouse fixture)


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("extra, words", [
    (("--input-size", "100000"), "--input-size 100000: expected at most 4096 pixels a side"),
    (("--depth", "100000000"), "--depth 100000000 at width 48: about 2765 billion parameters"),
    (("--seed", str(10 ** 23)), f"--seed {10 ** 23}: expected an integer from 0 to 2**32 - 1"),
    pytest.param(("--device", "mps"), "--device mps: this PyTorch build cannot run on it",
                 marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
], ids=["input-size", "depth", "seed", "device"])
def test_train_refuses_what_no_machine_runs(tmp_path, capsys, extra, words):
    folder = tmp_path / "run"
    assert main(["train", *tiny_argv(folder, *extra)]) == 2
    assert words in one_line(capsys)
    assert not folder.exists()


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"\x7fELF\x02\x01\x01\x00\xf0\x9f\xff")
    assert main(["train", *tiny_argv(tmp_path / "run"), "--config", str(config)]) == 2
    assert "--config: expected a YAML text file" in one_line(capsys)


def test_experiment_limits_and_report_only_on_a_missing_folder(tmp_path, capsys):
    assert main(["experiment", "jaccard", "--seeds", "1000000000", "--dry-run"]) == 2
    assert "expected at most 1000 seeds" in one_line(capsys)
    missing = tmp_path / "missing"
    assert main(["experiment", "jaccard", "--report-only", "--exp-dir", str(missing)]) == 2
    assert "--report-only: no experiment folder at" in one_line(capsys)
    assert not missing.exists()


def test_json_into_a_folder_and_a_huge_dpi_are_refused(tmp_path, capsys):
    folder = tmp_path / "run"
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 0
    capsys.readouterr()
    assert main(["analyze", "--weights", str(folder), "--num-samples", "2", "--device", "cpu",
                 "--json", str(tmp_path)]) == 2
    assert "expected a file name, that is a folder" in capsys.readouterr().err.splitlines()[-1]
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}_*"))  # no <folder>_2 beside it
    assert main(["eval", "--weights", str(folder), "--num-samples", "16", "--num-workers", "0", "--device", "cpu",
                 "--json", str(tmp_path)]) == 2
    assert "it is a folder; expected a file name" in capsys.readouterr().err
    assert main(["visualize", "--weights", str(folder), "--dpi", "100000", "--num-samples", "1", "--device", "cpu",
                 "--output-dir", str(tmp_path / "pictures")]) == 2
    assert "--dpi 100000: expected at most 1200" in capsys.readouterr().err
