"""Bad input gets one line `sarvit <cmd>: error: ...` and exit code 2: option values (command line and YAML),
output folders, checkpoints with missing or malformed fields, weights of another architecture or surgery."""
from __future__ import annotations

import os

import pytest
import torch

from sarvit import SarvitError, create_model
from sarvit.cli import main
from test_train_common import TINY, config_of, one_cpu_thread, tiny_argv  # noqa: F401 (autouse fixture)


# The tiny model and data set as `sarvit eval` takes them (TINY without train's own options).
TINY_EVAL = TINY[:TINY.index("--epochs")] + ["--num-workers", "0", "--device", "cpu"]


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"sarvit {argv[0]}: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv,words", [
    (["--lambda", "nan"], "--lambda nan: expected a finite number >= 0"),
    (["--lambda", "inf"], "--lambda inf"),
    (["--patch-size", "0"], "--patch-size 0: expected an integer >= 1"),
    (["--depth", "0"], "--depth 0"),
    (["--num-heads", "3", "--embed-dim", "32"], "--num-heads 3 does not divide --embed-dim 32"),
    (["--drop-path", "2"], "--drop-path 2.0: expected a finite number in [0, 1]"),
    (["--smoothing", "1.5"], "--smoothing 1.5: expected a finite number in [0, 1)"),
    (["--mixup-prob", "-0.1"], "--mixup-prob -0.1"),
    (["--device", "tpu9"], "--device 'tpu9': expected cpu, cuda, cuda:N, mps or auto"),
    (["--epochs", "0"], "--epochs 0"),
    (["--max-skipped-steps", "0"], "--max-skipped-steps 0"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_command_line_values(capsys, tmp_path, argv, words):
    assert words in one_error_line(capsys, ["train", *tiny_argv(tmp_path / "run"), *argv])
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("line,words", [
    ("epochs: true", "--epochs True: expected an integer >= 1"),
    ('lr: "abc"', "--lr 'abc': expected a finite number >= 0"),
    ("seed: 1.7", "--seed 1.7: expected an integer >= 0"),
    ('sar: "maybe"', "--sar 'maybe': expected a boolean (true/false, yes/no, on/off)"),
    ("model_ema: 1", "--model-ema 1: expected a boolean"),
    ("lambda: .nan", "--lambda nan"),
    ("smoothing: 1.5", "--smoothing 1.5"),
    ("device: tpu9", "--device 'tpu9'"),
    ("amp_dtype: fp8", "--amp-dtype 'fp8': expected one of bf16, fp16"),
])
def test_bad_yaml_values(capsys, tmp_path, line, words):
    (tmp_path / "run.yaml").write_text(line + "\n")
    err = one_error_line(capsys, ["train", *tiny_argv(tmp_path / "run"), "--config", str(tmp_path / "run.yaml")])
    assert f"--config {tmp_path / 'run.yaml'}: {words}" in err


@pytest.mark.parametrize("line,key,value", [
    ('sar: "no"', "sar", False), ("sar: 'off'", "sar", False), ("sar: yes", "sar", True),
    ('model_ema: "false"', "model_ema", False), ('model_ema: "ON"', "model_ema", True),
    ('lambda: "0.5"', "lam", 0.5), ("epochs: '7'", "epochs", 7), ("lambda: 0", "lam", 0.0),
])
def test_yaml_values_read_as_the_command_line_reads_them(tmp_path, line, key, value):
    (tmp_path / "run.yaml").write_text(line + "\n")
    config = config_of("--config", str(tmp_path / "run.yaml"))
    assert config[key] == value and type(config[key]) is type(value)
    if key == "sar":
        assert config["sar_loss"] is value and config["remove_last_norm"] is value


def test_output_dir_that_cannot_be_written_fails_before_loading_data(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    missing_data = ["--data-set", "cifar10", "--data-path", str(tmp_path / "no-such-data")]
    for out in (a_file, a_file / "run"):
        err = one_error_line(capsys, ["train", *tiny_argv(out), *missing_data])
        assert f"--output-dir {out}: {a_file} is a file, not a folder" in err
    err = one_error_line(capsys, ["segment-eval", "--weights", "w.pth", "--output-dir", str(a_file / "run")])
    assert "is a file, not a folder" in err
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        err = one_error_line(capsys, ["train", *tiny_argv(locked), *missing_data])
        assert f"--output-dir {locked}: cannot write there" in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished one-epoch tiny run's folder."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    torch.set_num_threads(1)
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 0
    return folder


@pytest.mark.parametrize("change,words", [
    (lambda c: c.pop("optimizer"), "the checkpoint lacks optimizer"),
    (lambda c: c.pop("rng"), "the checkpoint lacks rng"),
    (lambda c: c.update(epoch="0"), "the checkpoint's 'epoch' should be int, found str '0'"),
    (lambda c: c.update(epoch=0.5), "the checkpoint's 'epoch' should be int, found float"),
    (lambda c: c.update(best_top1="high"), "'best_top1' should be int or float"),
    (lambda c: c.update(config=[1]), "the checkpoint's 'config' should be the run's options (a dict)"),
    (lambda c: c["config"].update(epochs="many"), "(the options stored in the checkpoint): --epochs 'many'"),
], ids=["no-optimizer", "no-rng", "epoch-text", "epoch-float", "best-text", "config-list", "config-value"])
def test_resume_of_a_malformed_checkpoint(capsys, tmp_path, trained, change, words):
    checkpoint = torch.load(trained / "last.pth", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, tmp_path / "bad.pth")
    err = one_error_line(capsys, ["train", *tiny_argv(tmp_path / "run", "--epochs", "2"),
                                  "--resume", str(tmp_path / "bad.pth")])
    assert words in err


def test_weights_of_another_width_or_depth_name_the_switch(capsys, tmp_path, trained):
    state = torch.load(trained / "last.pth", weights_only=True)["model"]
    torch.save(state, tmp_path / "plain.pth")
    eval_argv = ["eval", "--weights", str(tmp_path / "plain.pth"), *TINY_EVAL]
    err = one_error_line(capsys, [*eval_argv, "--embed-dim", "96"])
    assert "the checkpoint is 48 wide, the model 96" in err and "--embed-dim 48" in err
    err = one_error_line(capsys, [*eval_argv, "--depth", "3"])
    assert "the checkpoint has 2 blocks, the model 3" in err and "--depth 2" in err


def test_sar_weights_without_the_surgery_name_the_switch(capsys, tmp_path, trained):
    state = torch.load(trained / "last.pth", weights_only=True)["model"]  # trained with SAR: no last norm2
    torch.save(state, tmp_path / "plain.pth")
    err = one_error_line(capsys, ["eval", "--weights", str(tmp_path / "plain.pth"), *TINY_EVAL, "--no-sar"])
    assert "trained with SAR's last-LayerNorm removal" in err and "build the model with --remove-last-norm" in err
    plain = create_model("vit_tiny_patch16_224", sar=False, img_size=32, patch_size=8, depth=2, embed_dim=48,
                         num_heads=3, num_classes=4)
    torch.save(plain.state_dict(), tmp_path / "timm.pth")
    assert main(["eval", "--weights", str(tmp_path / "timm.pth"), *TINY_EVAL]) == 0
    assert "pass --no-sar" in capsys.readouterr().out  # the reverse: a plain model evaluated with the surgery


@pytest.mark.parametrize("args,kwargs,words", [
    ((None,), {}, "name must be a timm model name"),
    (("vit_tiny_patch16_224",), dict(depth=0), "depth must be an integer >= 1, got 0"),
    (("vit_tiny_patch16_224",), dict(embed_dim=64, num_heads=3), "num_heads=3 does not divide embed_dim=64"),
    (("vit_tiny_patch16_224",), dict(img_size=4, patch_size=8), "smaller than one patch"),
])
def test_create_model_checks_its_sizes(args, kwargs, words):
    with pytest.raises(SarvitError, match=words.replace("(", r"\(")):
        create_model(*args, **kwargs)
