"""`sarvit train` end to end on a tiny synthetic set: learning, outputs, exact resume, eval, fine-tuning."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from sarvit import SarvitError, create_model
from sarvit.cli import main
from sarvit.models import sar_config
from sarvit.train import loop as loop_module
from test_train_common import one_cpu_thread, state_equal, tiny_argv  # noqa: F401 (autouse fixture)


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def timing_free(line: dict) -> dict:
    return {k: v for k, v in line.items() if k != "img_per_s"}


@pytest.mark.parametrize("sar", ["--sar", "--no-sar"])
def test_short_run_learns_and_writes_everything(tmp_path, capsys, sar):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out, sar, "--epochs", "3", "--tensorboard")]) == 0
    printed = capsys.readouterr().out
    assert "final: val top-1" in printed and str(out / "last.pth") in printed
    log = read_log(out)
    assert [line["epoch"] for line in log] == [0, 1, 2]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert (log[0]["train_entropy"] is not None) == (sar == "--sar")
    assert log[-1]["val_top5"] is None  # 4 classes: top-5 is reported with more than 5 classes only
    for key in ("train_ce", "train_top1", "lr", "val_top1", "val_loss", "val_entropy", "val_jaccard", "img_per_s"):
        assert log[-1][key] is not None
    assert 0.0 <= log[-1]["val_jaccard"] <= 100.0 and "attention Jaccard" in printed
    assert 0.0 <= log[-1]["train_top1"] <= 100.0 and f"train top-1 {log[-1]['train_top1']:.2f}%" in printed
    for name in ("config.yaml", "last.pth", "best.pth", "curves.png"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    checkpoint = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["model_config"]["sar"]["remove_last_skip"] == (sar == "--sar")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["sar"] == (sar == "--sar") and saved["epochs"] == 3


def _run_with_crash(monkeypatch, argv, crash_epoch, crash_step):
    """Run ``argv`` with an exception raised inside training step ``crash_step`` of ``crash_epoch``."""
    real = loop_module.train_one_epoch

    def crashing(step, loader, optimization, state, *args, **kwargs):
        if state.epoch == crash_epoch:
            original = loop_module.loss_terms
            calls = {"n": 0}

            def boom(*a, **k):
                calls["n"] += 1
                if calls["n"] > crash_step:
                    raise RuntimeError("simulated crash")
                return original(*a, **k)

            monkeypatch.setattr(loop_module, "loss_terms", boom)
        return real(step, loader, optimization, state, *args, **kwargs)

    monkeypatch.setattr("sarvit.train.runner.train_one_epoch", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["train", *argv])
    monkeypatch.undo()


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, monkeypatch):
    # Mixup, drop path, RandAugment, random erasing, EMA: every random stream must continue identically.
    extra = ["--epochs", "3", "--mixup", "0.8", "--cutmix", "1.0", "--drop-path", "0.1", "--reprob", "0.25",
             "--model-ema", "--model-ema-decay", "0.9", "--seed", "3", "--deterministic"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(["train", *tiny_argv(whole, *extra)]) == 0
    _run_with_crash(monkeypatch, tiny_argv(broken, *extra), crash_epoch=2, crash_step=2)
    assert len(read_log(broken)) == 2  # epochs 0 and 1 finished and were checkpointed
    assert main(["train", "--resume", str(broken / "last.pth")]) == 0  # the stored config continues the run
    a = torch.load(whole / "last.pth", weights_only=True)
    b = torch.load(broken / "last.pth", weights_only=True)
    assert state_equal(a["model"], b["model"]) and state_equal(a["model_ema"], b["model_ema"])
    assert [timing_free(x) for x in read_log(whole)] == [timing_free(x) for x in read_log(broken)]


def test_eval_reproduces_logged_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out)]) == 0
    best = max(read_log(out), key=lambda line: line["val_top1"])
    capsys.readouterr()
    result = tmp_path / "eval.json"
    assert main(["eval", "--weights", str(out / "best.pth"), "--json", str(result), "--num-workers", "0"]) == 0
    metrics = json.loads(result.read_text())
    assert metrics["top1"] == pytest.approx(best["val_top1"]) and metrics["top5"] == best["val_top5"] is None
    assert metrics["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert metrics["jaccard"] == pytest.approx(best["val_jaccard"])
    assert f"top-1 {best['val_top1']:.2f}%" in capsys.readouterr().out
    # the reference spelling: main.py --eval --resume CKPT
    assert main(["train", "--eval", "--resume", str(out / "best.pth"), "--num-workers", "0"]) == 0
    assert f"top-1 {best['val_top1']:.2f}%" in capsys.readouterr().out
    # --weights starts a new run from them (same head): with a zero learning rate they come out unchanged
    again = tmp_path / "again"
    assert main(["train", *tiny_argv(again, "--weights", str(out / "best.pth"), "--epochs", "1", "--lr", "0",
                                     "--min-lr", "0")]) == 0
    assert "starting from the weights in" in capsys.readouterr().out
    before = torch.load(out / "best.pth", weights_only=True)["model"]
    assert state_equal(before, torch.load(again / "last.pth", weights_only=True)["model"])


@pytest.mark.parametrize("pretrain,finetune,expect", [
    (["--no-sar"], ["--no-sar"], (False, False)),              # SAR in neither phase
    (["--sar"], ["--use-nosn"], (False, True)),                 # pre-training only: surgery kept, loss off
    (["--no-sar"], ["--use-blob"], (True, False)),              # fine-tuning only: original block, loss on
    (["--sar"], ["--sar"], (True, True)),                       # both
])
def test_finetune_across_class_counts(tmp_path, capsys, pretrain, finetune, expect):
    source = tmp_path / "pre"
    assert main(["train", *tiny_argv(source, *pretrain, "--epochs", "1")]) == 0
    out = tmp_path / "ft"
    argv = tiny_argv(out, *finetune, "--epochs", "1", "--num-classes", "3", "--finetune", str(source / "last.pth"))
    assert main(["train", *argv]) == 0
    assert "classifier head not loaded" in capsys.readouterr().out
    checkpoint = torch.load(out / "last.pth", weights_only=True)
    assert checkpoint["model"]["head.weight"].shape[0] == 3
    loss_on, surgery = expect
    assert checkpoint["config"]["sar_loss"] == loss_on
    assert checkpoint["model_config"]["sar"]["remove_last_skip"] == surgery
    assert (read_log(out)[0]["train_entropy"] is not None) == loss_on


def test_finetune_from_timm_state_dict(tmp_path, capsys):
    weights = tmp_path / "timm.pth"
    torch.manual_seed(0)
    timm_model = create_model("vit_tiny_patch16_224", sar=False, img_size=48, patch_size=8, depth=2, embed_dim=48,
                              num_heads=3, num_classes=7)
    torch.save({"model": timm_model.state_dict()}, weights)  # DeiT's layout; a bare state dict loads too
    out = tmp_path / "ft"
    assert main(["train", *tiny_argv(out, "--epochs", "1", "--finetune", str(weights))]) == 0
    printed = capsys.readouterr().out
    assert "removed by the SAR surgery" in printed and "classifier head not loaded" in printed


def test_resume_with_other_head_points_to_finetune(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out, "--epochs", "1")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out / "last.pth"), "--num-classes", "3", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "--finetune" in err and "head.weight" in err and "Traceback" not in err


def test_resume_with_other_surgery_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out, "--epochs", "1")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-sar", "--epochs", "2"]) == 2
    assert "--finetune" in capsys.readouterr().err


def test_sar_config_of_built_model_matches_flags(tmp_path):
    from sarvit.train import build
    from test_train_common import config_of

    config = config_of("--use-nosn", "--remove-last-mlp-skip", "--depth", "2", "--embed-dim", "48", "--input-size", "32")
    model = build.model_spec(config, 5).build()
    assert sar_config(model) == {"remove_last_skip": True, "remove_last_norm": True, "remove_last_mlp_skip": True,
                                 "similarity": "dot", "query": "cls"}  # query: S's default (models/query.py)
    with pytest.raises(SarvitError):
        build.model_spec({**config, "model": "resnet18"}, 5).build()


def test_resume_finished_run_with_more_epochs_extends_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out, "--epochs", "1")]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert "epochs 1 -> 2" in capsys.readouterr().out
    assert [line["epoch"] for line in read_log(out)] == [0, 1]


def test_finetune_keeps_pretrained_architecture_by_default(tmp_path):
    source = tmp_path / "pre"
    assert main(["train", *tiny_argv(source, "--epochs", "1")]) == 0
    out = tmp_path / "ft"
    assert main(["train", "--finetune", str(source / "best.pth"), "--num-classes", "3", "--num-samples", "48",
                 "--epochs", "1", "--batch-size", "16", "--num-workers", "0", "--no-tensorboard",
                 "--output-dir", str(out)]) == 0
    spec = torch.load(out / "last.pth", weights_only=True)["model_config"]
    assert spec["timm_kwargs"]["depth"] == 2 and spec["timm_kwargs"]["embed_dim"] == 48 and spec["timm_kwargs"]["num_classes"] == 3


def test_saved_config_repeats_the_run_instead_of_resuming_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out)]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "3", "--num-workers", "0"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert "resume" not in saved and saved["epochs"] == 3
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.yaml"), "--output-dir", str(again)]) == 0
    assert [line["epoch"] for line in read_log(again)] == [0, 1, 2]


def test_resuming_a_finished_run_without_more_epochs_is_an_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--num-workers", "0"]) == 2
    assert "nothing to train; pass --epochs N" in capsys.readouterr().err


def test_train_top1_counts_hard_and_soft_targets():
    from torchmetrics.classification import MulticlassAccuracy

    from sarvit.train.evaluation import hard_labels

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    top1 = MulticlassAccuracy(3, average="micro")
    assert float(top1(logits, hard_labels(torch.tensor([0, 1, 0, 2])))) == 0.5
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.6, 0.4, 0.0], [0.0, 0.2, 0.8], [0.5, 0.0, 0.5]])  # mixup's targets
    assert hard_labels(soft).tolist() == [0, 0, 2, 0]  # the largest class of each row (the first on a tie)
    assert float(top1(logits, hard_labels(soft))) == 0.75
