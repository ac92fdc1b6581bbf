"""`sarvit pretrain` end to end on a tiny synthetic run: both methods train, checkpoint the evaluation network
(teacher / momentum encoder) as 'model', resume exactly after kill -9; knn and linear-probe read the checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sarvit.train.ssl.features import train_linear_classifier
from sarvit.checkpoints import load_model
from sarvit.cli import main
from sarvit.train.ssl.pretrain import build_task
from sarvit.train.ssl.recipes import resolve_pretrain_config

DRIVER = Path(__file__).with_name("ssl_fault_driver.py")
SMALL = ("--depth", "2", "--embed-dim", "32", "--num-heads", "2", "--num-samples", "48", "--batch-size", "16",
         "--out-dim", "64", "--moco-mlp-dim", "64", "--moco-dim", "16", "--seed", "3")


def argv(method: str, folder: Path, *extra: str) -> list[str]:
    crops = ("--local-crops-number", "2") if method == "dino" else ()
    return ["--method", method, *SMALL, *crops, "--output-dir", str(folder), *extra]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_recipe_layers_and_sar_switches():
    config = resolve_pretrain_config({"method": "dino", "sar": True, "epochs": 3})
    assert config["epochs"] == 3 and config["input_size"] == 32 and config["local_size"] == 16
    assert config["regularizers"] == [{"name": "spatial-entropy", "weight": 0.01}]
    assert config["remove_last_skip"] and config["remove_last_norm"]
    plain = resolve_pretrain_config({"method": "mocov3", "scale": "paper"})
    assert plain["regularizers"] == [] and plain["lr"] == 1.5e-4 and plain["warmup_epochs"] == 40
    assert plain["moco_t"] == 0.2 and plain["moco_m"] == 0.99 and plain["weight_decay"] == 0.1


@pytest.mark.parametrize("method, init", [("dino", "timm"), ("mocov3", "moco"), ("mocov3", "timm")])
def test_each_method_starts_from_its_papers_initialisation(method, init):
    # MoCo-v3 initialises its ViT xavier-uniform (timm's "moco" mode: q, k and v each as a square matrix); DINO
    # keeps timm's truncated normal of std 0.02; --weight-init overrides the recipe
    config = resolve_pretrain_config({"method": method, "weight_init": init, "depth": 1, "embed_dim": 64,
                                      "num_heads": 2, "out_dim": 16, "moco_mlp_dim": 16, "moco_dim": 8})
    task, spec = build_task(config, steps_per_epoch=2)
    qkv = task.model.model.blocks[0].attn.qkv.weight.detach()
    fc1 = task.model.model.blocks[0].mlp.fc1.weight.detach()
    if init == "moco":
        assert qkv.abs().max() <= (6 / (64 + 64)) ** 0.5 and qkv.std() > 0.1  # U(-a, a) with a = sqrt(6 / 128)
        assert float(fc1.std()) == pytest.approx((2 / (64 + 256)) ** 0.5, rel=0.05)
        assert spec.timm_kwargs["weight_init"] == "moco"
    else:
        assert float(qkv.std()) == pytest.approx(0.02, rel=0.1) and "weight_init" not in spec.timm_kwargs


def test_the_moco_initialisation_only_where_timm_has_it_and_not_for_older_runs():
    from sarvit.errors import SarvitError

    assert resolve_pretrain_config({"method": "mocov3", "model": "eva02_tiny_patch14_224"})["weight_init"] == "timm"
    with pytest.raises(SarvitError, match="--weight-init moco: an initialisation of timm's VisionTransformer"):
        resolve_pretrain_config({"method": "mocov3", "model": "eva02_tiny_patch14_224", "weight_init": "moco"})
    stored = {key: value for key, value in resolve_pretrain_config({"method": "mocov3"}).items() if key != "weight_init"}
    assert resolve_pretrain_config({}, stored)["weight_init"] == "timm"  # stored before --weight-init existed


@pytest.mark.parametrize("method", ["dino", "mocov3"])
def test_tasks_keep_the_teacher_frozen_and_follow_the_student(method):
    config = resolve_pretrain_config({"method": method, "depth": 2, "embed_dim": 32, "num_heads": 2, "out_dim": 64,
                                      "moco_mlp_dim": 64, "moco_dim": 16, "sar": True})
    task, _ = build_task(config, steps_per_epoch=2)
    teacher = task.evaluation_model()
    assert teacher is not task.model.model and not any(p.requires_grad for p in teacher.parameters())
    if method == "dino":  # the teacher has no stochastic depth, the student keeps it
        kinds = [{type(m).__name__ for m in net.modules()} for net in (teacher, task.model.model)]
        assert "DropPath" not in kinds[0] and "DropPath" in kinds[1]
    if method == "mocov3":  # stop-grad-conv1 and the fixed sin-cos position embedding
        assert not task.model.model.patch_embed.proj.weight.requires_grad
        assert not task.model.model.pos_embed.requires_grad and task.model.model.pos_embed[0, 0].abs().sum() == 0
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)] + (
        [torch.randn(4, 3, 16, 16)] * 2 if method == "dino" else [])
    out = task((views, None))
    assert out.loss.ndim == 0 and out.terms.shape == (1,) and out.logits is None
    (out.loss + out.terms.sum()).backward()
    student = next(iter(task.model.model.blocks.parameters()))
    before = next(iter(teacher.blocks.parameters())).clone()
    with torch.no_grad():
        student.add_(1.0)
    task.after_step(1, total_steps=4)
    momentum = task.momentum(0, 4)
    after = next(iter(teacher.blocks.parameters()))
    assert torch.allclose(after, momentum * before + (1 - momentum) * student, atol=1e-6)
    assert task.state_dict()["_extra_state"] == {"steps_done": 1}


def test_dino_freezes_the_last_layer_in_its_first_epoch():
    config = resolve_pretrain_config({"method": "dino", "depth": 1, "embed_dim": 32, "num_heads": 2, "out_dim": 16})
    task, _ = build_task(config, steps_per_epoch=2)
    views = [torch.randn(2, 3, 32, 32)] * 2
    last = task.head.last_layer.parametrizations.weight.original1
    task((views, None)).loss.backward()
    assert last.grad is None
    task.after_step(2, total_steps=8)  # the first epoch is over
    task((views, None)).loss.backward()
    assert last.grad is not None


def _run(method: str, folder: Path, *extra: str, kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ([sys.executable, str(DRIVER), str(kill_after)] if kill_after is not None else
               [sys.executable, "-m", "sarvit", "pretrain"])
    return subprocess.run(command + argv(method, folder, *extra), env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("method", ["dino", "mocov3"])
def test_kill_9_then_resume_continues_exactly(tmp_path, method):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = _run(method, reference, "--epochs", "3")
    assert done.returncode == 0, done.stderr
    died = _run(method, killed, "--epochs", "3", kill_after=0)
    assert died.returncode == -signal.SIGKILL
    assert torch.load(killed / "last.pth", weights_only=True)["epoch"] == 0
    resumed = _run(method, killed, "--epochs", "3", "--resume", str(killed / "last.pth"))
    assert resumed.returncode == 0, resumed.stderr
    ours, theirs = (torch.load(f / "last.pth", weights_only=True) for f in (killed, reference))
    assert ours["global_step"] == theirs["global_step"] == 9
    for key in theirs["task"]:
        if key != "_extra_state":
            assert torch.equal(ours["task"][key], theirs["task"][key]), key
    assert ours["task"]["_extra_state"] == theirs["task"]["_extra_state"] == {"steps_done": 9}
    unstable = ("epoch_s",)
    lines = [[{k: v for k, v in json.loads(line).items() if k not in unstable} for line in
              (f / "log.jsonl").read_text().splitlines()] for f in (killed, reference)]
    assert lines[0] == lines[1] and len(lines[0]) == 3
    assert all("knn_init_top1" in line for line in lines[0])   # also the lines written after the resume
    # the checkpoint's 'model' is the evaluation network: the teacher / momentum encoder
    teacher_key = "teacher." if method == "dino" else "momentum_encoder."
    model, _ = load_model(reference / "last.pth", "cpu")
    for name, value in model.state_dict().items():
        assert torch.equal(value, theirs["task"][teacher_key + name]), name


def test_moco_loss_falls_and_knn_linear_probe_read_the_checkpoint(tmp_path, capsys):
    folder = tmp_path / "mocov3"
    # 12 steps of 16 images: a learning rate 10x the tiny recipe's, so that the fall is well above the step noise
    assert main(["pretrain", *argv("mocov3", folder, "--epochs", "4", "--lr", "1.5e-2", "--sar")]) == 0
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert log[-1]["train_loss"] < log[0]["train_loss"] and log[0]["train_reg_spatial_entropy"] > 0
    at_init = torch.load(folder / "last.pth", map_location="cpu", weights_only=False)["knn_at_init"]["top1"]
    assert all(line["knn_init_top1"] == at_init for line in log)   # what `sarvit experiment ssl` pairs with
    assert main(["knn", "--weights", str(folder / "last.pth"), "--num-samples", "48", "--nb-knn", "5"]) == 0
    knn = json.loads((folder / "knn.json").read_text())
    assert knn["k"] == 5 and knn["temperature"] == 0.07 and 0 <= knn["top5"] <= 100
    assert main(["linear-probe", "--weights", str(folder / "last.pth"), "--num-samples", "48", "--epochs", "2",
                 "--n-last-blocks", "2", "--avgpool-patchtokens"]) == 0
    probe = json.loads((folder / "linear-probe.json").read_text())
    assert 0 <= probe["top1"] <= 100 and probe["n_last_blocks"] == 2
    assert "linear-probe of" in capsys.readouterr().out


def test_linear_probe_gets_no_gradient_into_the_backbone():
    from sarvit import create_model
    from sarvit.train.ssl.features import features_of

    torch.manual_seed(0)
    backbone = create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=2, embed_dim=16, num_heads=2,
                            num_classes=0)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with torch.no_grad():
        features = features_of(backbone.eval(), torch.randn(12, 3, 16, 16), n_last_blocks=2, avgpool=True)
    assert features.shape == (12, 3 * 16) and not features.requires_grad
    labels = torch.arange(12) % 3
    classifier = train_linear_classifier(features, labels, 3, epochs=50, lr=50.0, batch_size=12)
    assert all(p.grad is None for p in backbone.parameters())
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())
    assert (classifier(features).argmax(dim=1) == labels).float().mean() > 0.9  # 12 points in 48-D: separable


def test_finetune_accepts_a_headless_pretrained_backbone():
    from sarvit import create_model, load_weights
    from sarvit.errors import SarvitError

    kwargs = dict(img_size=16, patch_size=4, depth=2, embed_dim=16, num_heads=2)
    backbone = create_model("vit_tiny_patch16_224", num_classes=0, **kwargs)
    classifier = create_model("vit_tiny_patch16_224", num_classes=5, **kwargs)
    head = classifier.head.weight.clone()
    report = load_weights(classifier, backbone.state_dict(), new_head=True)
    assert "head.weight" in report.missing and torch.equal(classifier.head.weight, head)
    assert torch.equal(classifier.blocks[0].attn.qkv.weight, backbone.blocks[0].attn.qkv.weight)
    with pytest.raises(SarvitError, match="lacks: head.weight"):
        load_weights(create_model("vit_tiny_patch16_224", num_classes=5, **kwargs), backbone.state_dict())
