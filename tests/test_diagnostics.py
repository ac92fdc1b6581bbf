"""The training probe against hand computations on a tiny ViT, the stall warning, and the run's log keys."""
from __future__ import annotations

import json
import math

import pytest
import torch

from sarvit import create_model
from sarvit.cli import main
from sarvit.train.diagnostics import TrainingProbe, map_mass, stall_warning
from test_train_common import one_cpu_thread, tiny_argv  # noqa: F401 (autouse fixture)


def tiny_model():
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", img_size=12, patch_size=4, depth=1, embed_dim=8, num_heads=2,
                         num_classes=3)
    with torch.no_grad():  # q = k = 0: every [CLS] map is flat (S = 0), its attention uniform
        model.blocks[-1].attn.qkv.weight[:16].zero_()
        model.blocks[-1].attn.qkv.bias[:16].zero_()
        model.head.bias.copy_(torch.tensor([1.0, 2.0, 2.0]))
    return model


def test_map_mass_by_hand():
    S = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[2.0, 2.0], [0.0, 0.0]]]])  # means 0.25 and 1
    assert torch.allclose(map_mass(S), torch.tensor([[0.75, 2.0]]))


def test_probe_against_hand_computation():
    model = tiny_model()
    norm_weight, bias = model.blocks[-1].norm1.weight, model.head.bias  # 8 ones (last block), [1, 2, 2]
    probe = TrainingProbe(model, [norm_weight, bias], ["spatial-entropy"], every=2)
    assert probe.due(0) and not probe.due(1) and probe.due(4)
    task = 3.0 * norm_weight.sum() + bias.sum()       # d/dW = 3 (8 of them), d/db = 1 (3 of them)
    terms = torch.stack([(bias ** 2).sum()])           # 0.5 * d/db = b = [1, 2, 2]: norm 3
    probe.measure(torch.zeros(2, 3, 12, 12), task, terms, torch.tensor([0.5]))
    with torch.no_grad():
        norm_weight.add_(0.1)                          # the "update": 0.1 on each of 8 ones
    probe.after_update()
    read = probe.read()
    assert read["diag_grad_task"] == pytest.approx(math.sqrt(9 * 8 + 3))
    assert read["diag_grad_task_last"] == pytest.approx(3 * math.sqrt(8))
    assert read["diag_grad_spatial_entropy"] == pytest.approx(3.0)
    assert read["diag_grad_spatial_entropy_last"] == 0.0   # the head's bias is not in the last block
    assert read["diag_grad_task_qk"] == read["diag_grad_spatial_entropy_qk"] == 0.0  # qkv is not among the params
    assert read["diag_update_ratio_last"] == pytest.approx(0.1)
    assert read["diag_task_loss"] == pytest.approx(3 * 8 + 5) == read["diag_initial_task_loss"]
    for head in (0, 1):  # uniform over the 3 x 3 patches, flat maps
        assert read[f"diag_attention_entropy_h{head}"] == pytest.approx(math.log(9), abs=1e-6)
        assert read[f"diag_spatial_entropy_h{head}"] == 0.0
    assert read["diag_min_map_mass"] == pytest.approx(0.0, abs=1e-6)
    assert probe.read() == {}                          # a new epoch starts empty


def test_probe_splits_the_query_and_key_rows():
    model = tiny_model()
    qkv = model.blocks[-1].attn.qkv.weight  # [24, 8]: q rows 0-7, k rows 8-15, v rows 16-23
    probe = TrainingProbe(model, [qkv], [], every=1)
    probe.measure(torch.zeros(1, 3, 12, 12), 2.0 * qkv[:16].sum() + qkv[16:].sum(), None, torch.zeros(0))
    probe.after_update()
    read = probe.read()
    assert read["diag_grad_task_qk"] == pytest.approx(2.0 * math.sqrt(128))
    assert read["diag_grad_task_last"] == pytest.approx(math.sqrt(4 * 128 + 64)) == read["diag_grad_task"]


def test_probe_averages_measurements_and_keeps_the_first_loss():
    model = tiny_model()
    probe = TrainingProbe(model, [model.head.bias], [], every=1)
    for value in (4.0, 2.0):
        probe.measure(torch.zeros(1, 3, 12, 12), value * model.head.bias.sum(), None, torch.zeros(0))
        probe.after_update()
    read = probe.read()
    assert read["diag_grad_task"] == pytest.approx(3 * math.sqrt(3))   # (4 + 2) / 2 * sqrt(3)
    assert read["diag_task_loss"] == pytest.approx(3 * 5) and read["diag_initial_task_loss"] == pytest.approx(20)
    assert read["diag_update_ratio_last"] == 0.0
    probe.measure(torch.zeros(1, 3, 12, 12), model.head.bias.sum(), None, torch.zeros(0))
    probe.after_update()
    assert "diag_initial_task_loss" not in probe.read()  # given once, in the first epoch's line


def test_stall_warning_only_when_the_task_loss_has_not_moved():
    flat = [{"epoch": 0, "train_diag_initial_task_loss": 2.3026, "train_ce": 2.31}, {"epoch": 1, "train_ce": 2.30}]
    assert "not moved" in stall_warning(flat, epochs=10)
    assert stall_warning(flat[:1], epochs=10) is None            # before 20 % of the schedule
    assert stall_warning(flat + [{"epoch": 2, "train_ce": 2.3}], epochs=10) is None  # said once
    learning = [flat[0], {"epoch": 1, "train_ce": 2.0}]
    assert stall_warning(learning, epochs=10) is None


def test_run_logs_diagnostics(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out, "--sar", "--epochs", "1", "--log-interval", "2", "--tensorboard")]) == 0
    line = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    for key in ("grad_ce", "grad_task", "grad_task_last", "grad_spatial_entropy", "update_ratio_last",
                "min_map_mass", "attention_entropy_h0", "spatial_entropy_h0", "initial_task_loss"):
        assert key == "grad_ce" or line[f"train_diag_{key}"] is not None, key
    assert line["train_diag_grad_task"] > 0 and 0 < line["train_diag_update_ratio_last"] < 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert "diagnostics/grad_spatial_entropy" in events.Tags()["scalars"]
    off = tmp_path / "off"
    assert main(["train", *tiny_argv(off, "--sar", "--epochs", "1", "--no-diagnostics")]) == 0
    assert not any(key.startswith("train_diag_") for key in json.loads((off / "log.jsonl").read_text()))
