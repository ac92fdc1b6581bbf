"""Features of a frozen network over a data set, as the k-NN and linear-probe evaluations read them."""
from __future__ import annotations

import torch
from torch import nn

from ..loop import batches

__all__ = ["features_of", "extract_features"]


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
