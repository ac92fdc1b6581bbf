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

from ..metrics import topk_accuracy
from ..options import defaults
from ..train.ssl.features import PROBE_EPOCHS, PROBE_LR, extract_features, train_linear_classifier
from .knn import frozen_network, report

__all__ = ["linear_probe", "run_linear_probe"]




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
