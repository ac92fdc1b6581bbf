"""`sarvit linear-probe`: a linear classifier on a frozen network's features (DINO's linear evaluation).

The features are DINO's: the [CLS] token after the final norm of each of the last ``--n-last-blocks`` blocks,
concatenated, optionally with the average-pooled patch tokens. They are computed once, without augmentation
(DINO recomputes them every epoch under random crops; on small sets the cached features are the fast
protocol), and the classifier is trained with SGD (momentum 0.9, no weight decay, lr x batch/256) and a
cosine schedule to 0, as DINO's ``eval_linear.py``.
"""
from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import topk_accuracy
from ..options import defaults
from ..train.ssl.features import extract_features
from .knn import frozen_network, report

__all__ = ["train_linear_classifier", "linear_probe", "run_linear_probe"]

PROBE_EPOCHS, PROBE_LR = 100, 1e-3  # DINO's eval_linear defaults (lr for a batch of 256)


def train_linear_classifier(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, epochs: int,
                            lr: float, batch_size: int, seed: int = 0) -> nn.Linear:
    """A ``nn.Linear(D, num_classes)`` (weights N(0, 0.01), bias 0) trained on ``features [N, D]``,
    ``labels [N]`` by SGD (momentum 0.9, ``lr`` x batch/256, cosine to 0 over ``epochs``), shuffled with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(features.shape[1], num_classes).to(features.device)
    with torch.no_grad():
        classifier.weight.normal_(0.0, 0.01, generator=generator)
        classifier.bias.zero_()
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr * batch_size / 256.0, momentum=0.9, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=0.0)
    for _ in range(epochs):
        order = torch.randperm(features.shape[0], generator=generator).to(features.device)
        for start in range(0, features.shape[0], batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(classifier(features[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return classifier


def linear_probe(config: dict[str, Any]) -> dict[str, Any]:
    """``{"top1", "top5", "epochs", "lr", "n_last_blocks", "avgpool_patchtokens", "weights", "data_set"}``."""
    model, bank, queries, num_classes, info = frozen_network(config)
    device = next(model.parameters()).device
    blocks, avgpool = config["n_last_blocks"], bool(config["avgpool_patchtokens"])
    train_x, train_y = extract_features(model, bank, device, blocks, avgpool)
    test_x, test_y = extract_features(model, queries, device, blocks, avgpool)
    classifier = train_linear_classifier(train_x, train_y, num_classes, epochs=config["epochs"], lr=config["lr"],
                                         batch_size=config["batch_size"], seed=config["seed"])
    with torch.no_grad():
        metrics = topk_accuracy(classifier(test_x), test_y)
    return {**metrics, "epochs": config["epochs"], "lr": config["lr"], "n_last_blocks": blocks,
            "avgpool_patchtokens": avgpool, "weights": info["weights"], "data_set": config["data_set"]}


def run_linear_probe(args: argparse.Namespace) -> int:
    typed = {k: v for k, v in vars(args).items() if k not in ("run", "command")}
    config = {**defaults("linear-probe"), "epochs": PROBE_EPOCHS, "lr": PROBE_LR, **typed}
    report("linear-probe", config, linear_probe(config))
    return 0
