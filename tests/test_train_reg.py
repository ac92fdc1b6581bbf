"""`sarvit train --reg NAME[:WEIGHT][@BLOCK]`: parsing, SAR's loss as a term, one run per regularizer, DRLoc's head
trained, checkpointed and resumed, checkpoints with a head read back by eval and analyze."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from sarvit import create_model
from sarvit.cli import main
from sarvit.losses import REGULARIZERS
from sarvit.train.regularizers import RegularizedModel, RegTerm, parse_reg
from test_train_common import config_of, one_cpu_thread, state_equal  # noqa: F401 (autouse fixture)

# the smallest run: 64 images in 4 steps of 16, one epoch, a 2-block 48-wide ViT on 4x4 patches
SMALL = ["--model", "vit_tiny_patch16_224", "--input-size", "32", "--patch-size", "8", "--depth", "2",
         "--embed-dim", "48", "--num-heads", "3", "--num-samples", "64", "--num-classes", "4", "--batch-size", "16",
         "--epochs", "1", "--num-workers", "0", "--no-tensorboard", "--warmup-epochs", "0", "--device", "cpu",
         "--seed", "5"]


def run(out, *extra: str) -> int:
    return main(["train", *SMALL, "--output-dir", str(out), *extra])


def read_log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def terms_of(*argv: str) -> list[dict]:
    return config_of(*SMALL, *argv)["regularizers"]


def test_parse_name_weight_block():
    assert parse_reg("tv") == ("tv", None, None)
    assert parse_reg("drloc:0.5") == ("drloc", 0.5, None)
    assert parse_reg("distance@0") == ("distance", None, 0)
    assert parse_reg("patch-similarity:0.02@-2") == ("patch-similarity", 0.02, -2)
    assert parse_reg("tv:0") == ("tv", 0.0, None)


@pytest.mark.parametrize("spec,message", [
    ("entropy", "unknown regularizer 'entropy'; expected one of spatial-entropy, tv"),
    ("tv:nan", "the weight must be a finite number >= 0, got 'nan'"),
    ("tv:-0.1", "the weight must be a finite number >= 0, got '-0.1'"),
    ("tv:inf", "the weight must be a finite number >= 0"),
    ("tv:abc", "the weight must be a finite number >= 0, got 'abc'"),
    ("tv:", "a weight must follow ':'"),
    ("distance@x", "@BLOCK must be a block index (an integer"),
    ("tv@1", "tv reads the last block's output, not a chosen block; @BLOCK applies to distance, patch-similarity"),
    ("distance@2", "the model has 2 blocks; give @BLOCK in 0..1 (or -2..-1 from the end)"),
    ("distance@-3", "the model has 2 blocks"),
])
def test_bad_reg_is_one_line_error(tmp_path, capsys, spec, message):
    assert run(tmp_path / "bad", "--reg", spec) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sarvit train: error: --reg {spec}") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_repeated_or_doubly_weighted_terms_are_errors():
    with pytest.raises(Exception, match="--reg tv is given more than once"):
        terms_of("--reg", "tv", "--reg", "tv:0.1")
    with pytest.raises(Exception, match="--lambda 0.02 and --reg spatial-entropy:0.03 both weight"):
        terms_of("--lambda", "0.02", "--reg", "spatial-entropy:0.03")
    with pytest.raises(Exception, match="--no-sar-loss and --reg spatial-entropy contradict"):
        terms_of("--no-sar-loss", "--reg", "spatial-entropy")


def test_sar_loss_is_the_spatial_entropy_term():
    entropy = [{"name": "spatial-entropy", "weight": 0.05}]
    for argv in (("--use-blob", "--lambda", "0.05"), ("--sar-loss", "--blob-weight", "0.05"),
                 ("--no-sar", "--reg", "spatial-entropy:0.05"), ("--no-sar", "--lambda", "0.05", "--reg",
                                                                 "spatial-entropy")):
        config = config_of(*SMALL, *argv)
        assert config["regularizers"] == entropy, argv
        assert (config["sar_loss"], config["lam"], config["remove_last_skip"], config["sar"]) == (True, 0.05, False,
                                                                                                  False)
    assert terms_of("--sar") == [{"name": "spatial-entropy", "weight": 0.01}]
    assert terms_of("--no-sar") == [] and terms_of("--sar", "--lambda", "0") == []
    assert terms_of("--sar", "--reg", "drloc") == [{"name": "spatial-entropy", "weight": 0.01},
                                                   {"name": "drloc", "weight": 0.1}]
    assert terms_of("--no-sar", "--reg", "tv") == [{"name": "tv", "weight": 0.01}]
    assert terms_of("--no-sar", "--reg", "distance", "--reg", "patch-similarity:0.1@0") == [
        {"name": "distance", "weight": 0.01, "block": -1}, {"name": "patch-similarity", "weight": 0.1, "block": 0}]
    assert terms_of("--no-sar", "--reg", "tv:0") == []  # weight 0 turns a term off


def test_saved_config_repeats_the_terms(tmp_path):
    from sarvit.train.config import save_config

    config = config_of(*SMALL, "--no-sar", "--reg", "spatial-entropy:0.05", "--reg", "distance@0")
    save_config(config, tmp_path / "config.yaml")
    again = config_of("--config", str(tmp_path / "config.yaml"))
    assert again["regularizers"] == config["regularizers"] == [
        {"name": "spatial-entropy", "weight": 0.05}, {"name": "distance", "weight": 0.01, "block": 0}]
    assert config_of("--config", str(tmp_path / "config.yaml"), "--reg", "tv")["regularizers"] == [
        {"name": "spatial-entropy", "weight": 0.05}, {"name": "tv", "weight": 0.01}]  # --lambda 0.05 was saved


def test_capture_asks_only_for_what_the_terms_read():
    model = create_model("vit_tiny_patch16_224", sar=False, img_size=32, patch_size=8, depth=3, embed_dim=48,
                         num_heads=3, num_classes=4)
    wrapped = RegularizedModel(model, [RegTerm("distance", 0.01, -1), RegTerm("patch-similarity", 0.1, 2),
                                       RegTerm("drloc", 0.1)])
    assert wrapped.capture.attention_blocks == (2,) and wrapped.capture.tokens and not wrapped.capture.maps
    logits, terms = wrapped(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 4) and terms.shape == (3,) and terms.dtype == torch.float32
    assert all(block.attn.fused_attn == model.blocks[0].attn.fused_attn for block in model.blocks)  # untouched
    assert RegularizedModel(model, [])(torch.rand(2, 3, 32, 32))[1] is None


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_each_regularizer_trains_and_logs_its_term(tmp_path, name):
    out = tmp_path / name
    # the spatial entropy's weight waits for the task to learn (sarvit.train.loss_gate): here always on
    always_on = ("--sar-loss-gate", "0") if name == "spatial-entropy" else ()
    assert run(out, "--no-sar", "--reg", name, *always_on) == 0
    line = read_log(out)[0]
    key = "train_reg_" + name.replace("-", "_")
    assert line[key] > 0 and line["train_loss"] > line["train_ce"]
    assert (line["train_entropy"] is not None) == (name == "spatial-entropy")
    assert not [k for k in line if k.startswith("train_reg_") and k != key]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert [term["name"] for term in saved["regularizers"]] == [name] and saved["reg"] == [name]
    checkpoint = torch.load(out / "last.pth", weights_only=True)
    assert checkpoint["config"]["regularizers"] == saved["regularizers"]
    assert ("regularizers" in checkpoint) == (name == "drloc")


def test_sar_with_drloc_trains_the_head_checkpoints_and_resumes_it(tmp_path, capsys):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    constant_lr = ("--sched", "step", "--decay-epochs", "100")  # the same steps whether 1 or 2 epochs are planned
    assert run(whole, "--sar", "--reg", "drloc", "--epochs", "2", *constant_lr) == 0
    line = read_log(whole)[-1]
    assert line["train_reg_drloc"] > 0 and line["train_reg_spatial_entropy"] == line["train_entropy"] > 0
    printed = capsys.readouterr().out
    assert "loss terms: spatial-entropy 0.01, drloc 0.1" in printed and ", drloc " in printed
    # one epoch, then resumed: the same head and model as the uninterrupted run
    assert run(broken, "--sar", "--reg", "drloc", "--epochs", "1", *constant_lr) == 0
    after_one = torch.load(broken / "last.pth", weights_only=True)["regularizers"]
    assert main(["train", "--resume", str(broken / "last.pth"), "--epochs", "2", "--num-workers", "0"]) == 0
    resumed, straight = (torch.load(path / "last.pth", weights_only=True) for path in (broken, whole))
    assert set(resumed["regularizers"]) == {f"drloc.head.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    assert state_equal(resumed["regularizers"], straight["regularizers"])
    assert state_equal(resumed["model"], straight["model"])
    assert not state_equal(after_one, straight["regularizers"])  # the head trains with the model
    # a resumed run without the head's term is refused in one line
    assert main(["train", "--resume", str(whole / "last.pth"), "--epochs", "3", "--reg", "tv"]) == 2
    assert "holds trained weights of the regularizers drloc, this run's terms have weights for none" in \
        capsys.readouterr().err
    # eval and the analysis commands rebuild the model of a checkpoint that carries a DRLoc head
    assert main(["eval", "--weights", str(whole / "last.pth"), "--num-workers", "0", "--device", "cpu"]) == 0
    assert main(["analyze", "--weights", str(whole / "last.pth"), "--num-samples", "8", "--num-workers", "0",
                 "--device", "cpu", "--output-dir", str(tmp_path / "analyze")]) == 0


def test_terms_reach_tensorboard_and_the_curves(tmp_path, monkeypatch):
    import matplotlib.axes
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sarvit.train import records

    lines = [{"epoch": epoch, "train_loss": 1.0 - epoch / 10, "train_reg_tv": 0.3 - epoch / 100,
              "train_reg_drloc": 0.2} for epoch in range(2)]
    log = records.RunLog(tmp_path, [], tensorboard=True)
    for line in lines:
        log.add(line)
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/reg_tv", "train/reg_drloc", "train/loss"} <= set(events.Tags()["scalars"])
    assert [round(e.value, 6) for e in events.Scalars("train/reg_tv")] == [0.3, 0.29]
    labels, original = [], matplotlib.axes.Axes.plot

    def spy(axis, *args, label=None, **kwargs):
        labels.append(label)
        return original(axis, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    assert records.plot_curves(lines, tmp_path / "curves.png").is_file()
    assert "tv" in labels and "drloc" in labels
