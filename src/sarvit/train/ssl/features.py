"""Features of a frozen network over a data set, as the k-NN and linear-probe evaluations read them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation import batches

__all__ = ["PROBE_EPOCHS", "PROBE_LR", "features_of", "extract_features", "train_linear_classifier"]

PROBE_EPOCHS, PROBE_LR = 100, 1e-3  # DINO's eval_linear defaults (lr for a batch of 256)


def features_of(model: nn.Module, images: torch.Tensor, n_last_blocks: int = 1, avgpool: bool = False) -> torch.Tensor:
    """``[B, D']``: the [CLS] token after the final norm of each of the last ``n_last_blocks`` blocks, concatenated
    (DINO's linear-evaluation features), with ``avgpool`` also the mean of the last block's patch tokens.
    ``n_last_blocks=1`` without ``avgpool`` is the network's pooled [CLS] feature, whatever its head."""
    if n_last_blocks == 1 and not avgpool:
        return model.forward_head(model.forward_features(images), pre_logits=True)
    depth = len(model.blocks)
    if not 1 <= n_last_blocks <= depth:
        raise ValueError(f"n_last_blocks must be in 1..{depth} (the model's blocks), got {n_last_blocks}")
    layers = model.get_intermediate_layers(images, n=n_last_blocks, return_prefix_tokens=True, norm=True)
    parts = [prefix[:, 0] for _, prefix in layers]
    if avgpool:
        parts.append(layers[-1][0].mean(dim=1))
    return torch.cat(parts, dim=-1)


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: torch.device, n_last_blocks: int = 1,
                     avgpool: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, D'], labels [N])`` of every item of ``loader`` (``(image, label, ...)`` batches), the model
    in eval mode and without gradients; the features stay on ``device``."""
    was_training = model.training
    model.eval()
    features, labels = [], []
    try:
        for images, targets, *_ in batches(loader):
            features.append(features_of(model, images.to(device, non_blocking=True), n_last_blocks, avgpool).float())
            labels.append(targets.to(device, non_blocking=True))
    finally:
        model.train(was_training)
    return torch.cat(features), torch.cat(labels)


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
