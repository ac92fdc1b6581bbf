"""Issue 18's stall mechanism on a tiny case, and the gate that removes it.

With the task at chance (fresh noise and random labels every step), the spatial entropy (papers' form, always
on) drives the SAR block's query/key weights under AdamW and inflates the maps' scale: their mass
``sum ReLU(S - mean)`` grows several-fold in 40 steps (the [CLS] softmax heads for saturation). Gated by the
task's progress, the term is off while the task loss sits at chance, and the maps keep their scale.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sarvit import create_model
from sarvit.models import Capture
from sarvit.train.diagnostics import map_mass
from sarvit.train.distributed import DistInfo
from sarvit.train.loop import LoopState, Optimization, StepSettings, train_one_epoch
from sarvit.train.loss_gate import LossGate
from sarvit.train.regularizers import RegTerm, RegularizedModel
from sarvit.train.tasks import SupervisedTask
from test_train_common import one_cpu_thread  # noqa: F401 (autouse fixture)


class _ConstantLR:
    def step_update(self, num_updates: int) -> None:
        pass


def _median_mass(model, x) -> float:
    with torch.no_grad():
        _, captured = model(x, capture=Capture(maps=True))
    return float(map_mass(captured["maps"]).median())


def _train_at_chance(gate_drop: float):
    """40 SAR steps (surgery + lambda 0.01, the quick recipe's AdamW at lr 2e-3) on noise with random labels."""
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=1, embed_dim=32, num_heads=2,
                         num_classes=10)
    regularized = RegularizedModel(model, [RegTerm("spatial-entropy", 0.01)])
    generator = torch.Generator().manual_seed(1)
    loader = [(torch.randn(16, 3, 32, 32, generator=generator), torch.randint(0, 10, (16,), generator=generator))
              for _ in range(40)]
    probe_images = torch.randn(16, 3, 32, 32, generator=generator)
    before = _median_mass(model, probe_images)
    optimizer = torch.optim.AdamW(regularized.parameters(), lr=2e-3, weight_decay=0.05)
    gate = LossGate([True], 10, gate_drop, torch.device("cpu")) if gate_drop else None
    metrics = train_one_epoch(SupervisedTask(regularized, nn.CrossEntropyLoss()), loader,
                              Optimization(optimizer, _ConstantLR()), LoopState(),
                              StepSettings(reg_names=("spatial-entropy",), reg_weights=(0.01,), log_interval=10),
                              DistInfo(), gate=gate)
    return before, _median_mass(model, probe_images), metrics


@pytest.mark.slow
def test_the_papers_form_inflates_the_maps_at_chance_and_the_gate_does_not():
    before, exact, exact_metrics = _train_at_chance(gate_drop=0.0)
    start, gated, gated_metrics = _train_at_chance(gate_drop=0.05)
    assert start == before
    for metrics in (exact_metrics, gated_metrics):      # the task has not learned in either run
        assert abs(metrics["ce"] - math.log(10)) < 0.1
    assert gated_metrics["sar_loss_gate"] < 0.01        # closed (but for noise) for the whole run at chance
    # the mechanism: with the loss always on, the maps' scale runs away from where the task alone takes it
    assert exact > 3.0 * before and exact > 2.0 * gated, (before, exact, gated)


def test_gate_opens_with_the_task_loss():
    gate = LossGate([True, False], num_classes=10, drop=0.05, device=torch.device("cpu"))
    weights = torch.tensor([0.01, 1.0])
    for _ in range(200):  # the running mean reaches a loss 10 % below chance
        gate.update(torch.tensor(0.9 * math.log(10)))
    assert torch.allclose(gate.weights(weights), weights)
    half = LossGate([True], num_classes=10, drop=0.05, device=torch.device("cpu"))
    half.running = torch.tensor(math.log(10) * (1 - 0.025))  # halfway to the full drop
    assert float(half.weights(torch.tensor([0.01]))) == pytest.approx(0.005, rel=1e-5)
    half.update(torch.tensor(float("nan")))                   # a non-finite loss leaves the mean alone
    assert float(half.running) == pytest.approx(math.log(10) * 0.975)
    with pytest.raises(ValueError, match="drop must be > 0"):
        LossGate([True], num_classes=10, drop=0.0, device=torch.device("cpu"))
