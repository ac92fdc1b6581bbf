"""DINO's and MoCo-v3's pieces against hand computations: losses, centring, EMA, schedules, heads, k-NN votes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sarvit.metrics import knn_scores, topk_accuracy
from sarvit.train.ssl import (CosineWeightDecay, DINOHead, bn_mlp, centre_update, contrastive_loss, cosine_ramp,
                              dino_loss, ema_update, spread, symmetrised_loss, teacher_entropies, teacher_temperature)


def _cross_entropy(p: torch.Tensor, q_logits: torch.Tensor) -> float:
    """sum_k -p_k log softmax(q)_k, by hand."""
    q = [math.exp(v) for v in q_logits.tolist()]
    total = sum(q)
    return -sum(pk * math.log(qk / total) for pk, qk in zip(p.tolist(), q))


def test_dino_loss_pairs_every_teacher_global_crop_with_every_other_crop():
    torch.manual_seed(0)
    batch, k, crops = 2, 3, 4
    student, teacher, centre = torch.randn(crops * batch, k), torch.randn(2 * batch, k), torch.randn(1, k)
    ts, tt = 0.1, 0.04
    expected, pairs = 0.0, 0
    for i in range(2):          # teacher's global crops
        for v in range(crops):  # student's crops, never the same crop
            if v == i:
                continue
            per_image = []
            for b in range(batch):
                target = F.softmax((teacher[i * batch + b] - centre[0]) / tt, dim=0)
                per_image.append(_cross_entropy(target, student[v * batch + b] / ts))
            expected += sum(per_image) / batch
            pairs += 1
    assert pairs == 6
    got = dino_loss(student, teacher, centre, ts, tt, num_crops=crops)
    assert float(got) == pytest.approx(expected / pairs, rel=1e-5)


def test_dino_loss_sharpening_and_centring():
    # a teacher sharper than the student: a colder temperature makes the target closer to one-hot
    teacher = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    student = torch.zeros(4, 3)
    cold = dino_loss(student, teacher, torch.zeros(1, 3), 0.1, 0.01, num_crops=4)
    assert float(cold) == pytest.approx(math.log(3), abs=1e-6)  # a uniform student: log K whatever the target
    # subtracting the teacher's own output as centre leaves a uniform target
    student = torch.tensor([[5.0, 0.0, 0.0]] * 4)
    centred = dino_loss(student, teacher, teacher[:1], 1.0, 0.04, num_crops=4)
    assert float(centred) == pytest.approx(_cross_entropy(torch.full((3,), 1 / 3), student[0]), rel=1e-6)


def test_centre_is_an_ema_of_the_batch_mean():
    centre = torch.tensor([[1.0, 2.0]])
    centre_update(centre, torch.tensor([[0.0, 0.0], [2.0, 4.0]]), momentum=0.9)
    assert torch.allclose(centre, torch.tensor([[0.9 * 1 + 0.1 * 1, 0.9 * 2 + 0.1 * 2]]))
    centre_update(centre, torch.tensor([[11.0, 22.0]]), momentum=0.5)
    assert torch.allclose(centre, torch.tensor([[6.0, 12.0]]))


def test_ema_update_and_momentum_schedule():
    teacher, student = [torch.tensor([1.0, 1.0])], [torch.tensor([3.0, -1.0])]
    ema_update(teacher, student, momentum=0.75)
    assert torch.allclose(teacher[0], torch.tensor([1.5, 0.5]))
    assert cosine_ramp(0.996, 1.0, 0, 10) == pytest.approx(0.996)
    assert cosine_ramp(0.99, 1.0, 5, 10) == pytest.approx(0.995)
    assert cosine_ramp(0.99, 1.0, 10, 10) == pytest.approx(1.0)
    assert cosine_ramp(0.04, 0.4, 3, 12) == pytest.approx(0.4 + (0.04 - 0.4) * (1 + math.cos(math.pi / 4)) / 2)


def test_teacher_temperature_warms_up_linearly_then_stays():
    assert [teacher_temperature(e, 0.04, 0.07, 30) for e in (0, 29, 30, 99)] == pytest.approx([0.04, 0.07, 0.07, 0.07])
    assert teacher_temperature(10, 0.04, 0.07, 30) == pytest.approx(0.04 + 0.03 * 10 / 29)
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07


def test_moco_loss_is_2_tau_cross_entropy_on_a_hand_batch():
    q = torch.tensor([[3.0, 4.0], [1.0, 0.0]])       # normalised: (0.6, 0.8), (1, 0)
    k = torch.tensor([[0.0, 2.0], [1.0, 1.0]])       # normalised: (0, 1), (0.7071, 0.7071)
    tau = 0.2
    s = 1 / math.sqrt(2)
    logits = [[0.8 / tau, (0.6 * s + 0.8 * s) / tau], [0.0, s / tau]]
    ce = [-(row[i] - math.log(sum(math.exp(v) for v in row))) for i, row in enumerate(logits)]
    assert float(contrastive_loss(q, k, tau)) == pytest.approx(2 * tau * sum(ce) / 2, rel=1e-6)


def test_moco_loss_is_symmetrised_over_the_views():
    torch.manual_seed(1)
    q1, q2, k1, k2 = (torch.randn(4, 8) for _ in range(4))
    both = symmetrised_loss(q1, q2, k1, k2, 0.2)
    assert float(both) == pytest.approx(float(contrastive_loss(q1, k2, 0.2) + contrastive_loss(q2, k1, 0.2)))
    assert float(both) != pytest.approx(float(contrastive_loss(q1, k1, 0.2) + contrastive_loss(q2, k2, 0.2)))
    q1.requires_grad_(True)
    symmetrised_loss(q1, q2, k1.requires_grad_(True), k2, 0.2).backward()
    assert q1.grad is not None and k1.grad is None  # keys come from the momentum encoder: no gradient


def test_dino_head_last_layer_norm_and_freezing():
    head = DINOHead(8, out_dim=5, hidden_dim=6, bottleneck_dim=4, norm_last_layer=True)
    magnitude = head.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad and torch.equal(magnitude, torch.ones(5, 1))
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(5))  # weight rows of norm g = 1
    head(torch.randn(3, 8), freeze_last_layer=True).sum().backward()
    assert head.last_layer.parametrizations.weight.original1.grad is None
    assert head.mlp[0].weight.grad is not None
    assert DINOHead(8, 5, 6, 4, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad


def test_moco_mlps_end_in_batch_norm_without_affine():
    projector, predictor = bn_mlp(8, 16, 4, layers=3), bn_mlp(4, 16, 4, layers=2)
    assert [type(m).__name__ for m in projector] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1d"]
    assert len([m for m in predictor if isinstance(m, torch.nn.Linear)]) == 2
    assert not projector[-1].affine and not predictor[-1].affine and projector[1].affine


def test_knn_votes_are_similarity_weighted():
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.2, 1.0]])
    labels = torch.tensor([0, 0, 1, 2])
    query = torch.tensor([[0.6, 0.8]])
    scores = knn_scores(bank, labels, query, num_classes=3, k=3, temperature=0.5)
    unit = F.normalize(bank, dim=1)
    cos = (unit @ F.normalize(query, dim=1).T).squeeze(1)   # 0.6, 0.676, 0.8, 0.902 -> neighbours 3, 2, 1
    expected = [math.exp(cos[1] / 0.5), math.exp(cos[2] / 0.5), math.exp(cos[3] / 0.5)]
    assert scores[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert topk_accuracy(scores, torch.tensor([2]), ks=(1, 2)) == {"top1": 100.0, "top2": 100.0}
    with pytest.raises(ValueError, match=r"k must be an integer >= 1 and <= 4"):
        knn_scores(bank, labels, query, 3, k=5)


def test_teacher_entropies_by_hand():
    teacher, centre, temp = torch.tensor([[0.0, 0.04 * math.log(3.0)], [0.0, 0.0]]), torch.zeros(1, 2), 0.04
    per_image, of_mean = teacher_entropies(teacher, centre, temp)
    # image 1: softmax = (1/4, 3/4); image 2: (1/2, 1/2); their mean (3/8, 5/8)
    h = lambda *p: -sum(v * math.log(v) for v in p)  # noqa: E731
    assert float(per_image) == pytest.approx((h(0.25, 0.75) + h(0.5, 0.5)) / 2, rel=1e-5)
    assert float(of_mean) == pytest.approx(h(0.375, 0.625), rel=1e-5)
    # the centre is subtracted first: centring image 1's logits away leaves two uniform targets
    assert float(teacher_entropies(teacher[:1], teacher[:1], temp)[0]) == pytest.approx(math.log(2), rel=1e-5)


def test_spread_is_the_scaled_batch_std_of_normalised_outputs():
    q = torch.tensor([[3.0, 4.0], [4.0, -3.0], [0.0, 10.0]])
    unit = q / q.norm(dim=1, keepdim=True)  # (0.6, 0.8), (0.8, -0.6), (0, 1)
    by_hand = [math.sqrt(sum((v - sum(col) / 3) ** 2 for v in col) / 2) for col in unit.T.tolist()]
    assert float(spread(q)) == pytest.approx(sum(by_hand) / 2 * math.sqrt(2), rel=1e-5)
    assert float(spread(q[[0, 0, 0]] * torch.tensor([[1.0], [2.0], [5.0]]))) == pytest.approx(0.0, abs=1e-6)


def test_cosine_weight_decay_follows_the_updates_and_survives_a_state_reload():
    decayed, plain = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([{"params": [plain], "weight_decay": 0.0},
                                   {"params": [decayed], "weight_decay": 0.04}], lr=1.0)
    calls = []

    class Recorder:
        def step_update(self, num_updates):
            calls.append(num_updates)

        def state_dict(self):
            return {"calls": list(calls)}

        def load_state_dict(self, state):
            calls[:] = state["calls"]

    schedule = CosineWeightDecay(Recorder(), optimizer, 0.04, 0.4, total_steps=4)
    schedule.step_update(num_updates=2)
    assert calls == [2] and optimizer.param_groups[1]["weight_decay"] == pytest.approx(0.22)
    assert optimizer.param_groups[0]["weight_decay"] == 0.0  # biases and norms stay undecayed
    optimizer.load_state_dict(optimizer.state_dict())  # a resume: new group dicts
    schedule.step_update(num_updates=4)
    assert optimizer.param_groups[1]["weight_decay"] == pytest.approx(0.4) and schedule.state_dict() == {"calls": [2, 4]}
