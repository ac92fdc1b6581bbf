"""One evaluation pass (top-1/top-5, cross-entropy, spatial entropy, attention Jaccard) with torchmetrics, and
the small pieces the training loop shares with it."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ..data import MaskedDataset
from ..errors import SarvitError
from ..losses import spatial_entropy
from ..metrics import AttentionJaccard
from ..models import has_class_token
from ..models.pyramids import capture_blocks
from .distributed import DistInfo, all_reduce_sum

__all__ = ["evaluate", "attention_jaccard", "autocast_context", "batches", "hard_labels"]


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """Class indices ``[B]``; mixup/cutmix's soft targets ``[B, K]`` give their largest class (the first on a tie).

    >>> hard_labels(torch.tensor([[0.7, 0.3], [0.5, 0.5]])).tolist()
    [0, 0]
    """
    return targets.argmax(dim=-1) if targets.ndim > 1 else targets


def batches(loader):
    """Iterate ``loader``; a SarvitError from a worker process (say, an unreadable image) keeps its one-line
    message instead of carrying the worker's traceback text."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except SarvitError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            message = lines[-1] if lines else str(error)
            prefix = f"{SarvitError.__module__}.{SarvitError.__name__}: "
            raise SarvitError(message[len(prefix):] if message.startswith(prefix) else message) from None
        yield batch


def _accuracy(num_classes: int, top_k: int, device: torch.device) -> MulticlassAccuracy:
    return MulticlassAccuracy(num_classes, top_k=top_k, average="micro", validate_args=False).to(device)



def attention_jaccard(dataset, model: nn.Module) -> Optional[AttentionJaccard]:
    """The attention Jaccard metric when the evaluation set has masks (the synthetic set does) and the model a
    [CLS] query whose attention it scores (ARViT has none)."""
    if (isinstance(dataset, MaskedDataset) or getattr(dataset, "has_masks", False)) and has_class_token(model):
        return AttentionJaccard(capture_blocks(model)[-1].attn.num_heads)
    return None

@torch.no_grad()
def evaluate(model: nn.Module, loader, info: DistInfo, amp_dtype: Optional[torch.dtype] = None,
             jaccard: Optional[AttentionJaccard] = None) -> dict:
    """Top-1 / top-5 accuracy (%; top-5 None with 5 classes or fewer), mean cross-entropy and mean spatial entropy
    of the [CLS] maps (None for a model without a [CLS] token, such as ARViT), and ``images``.

    With ``jaccard`` (an :class:`~sarvit.metrics.AttentionJaccard`, for a loader of a dataset with masks,
    items ``(image, target, foreground, valid)``) the mean best-head Jaccard (%) of the thresholded [CLS]
    attention with the masks is added (``jaccard``), from the same forward pass. Each process evaluates its
    shard; the metrics are synced over the processes, so the figures are those of the whole set exactly once.
    """
    model.eval()
    device = info.device
    has_cls = has_class_token(model)
    if jaccard is not None and not has_cls:
        raise SarvitError("the attention Jaccard scores the [CLS] attention; this model has no [CLS] token")
    if jaccard is not None:
        jaccard.reset()
        jaccard.to(device)
    loss, entropy = (MeanMetric(nan_strategy="disable").to(device) for _ in range(2))
    top1 = top5 = None
    count = 0
    for images, targets, *masks in batches(loader):
        x, y = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast_context(device, amp_dtype):
            if has_cls:
                logits, maps, *attention = model(x, return_maps=True, return_attention=jaccard is not None)
            else:  # no [CLS] query (ARViT): no maps to score
                logits, maps = model(x), None
        logits = logits.float()
        if top1 is None:
            top1 = _accuracy(logits.shape[1], 1, device)
            top5 = _accuracy(logits.shape[1], 5, device) if logits.shape[1] > 5 else None
        top1.update(logits, y)
        if top5 is not None:
            top5.update(logits, y)
        loss.update(F.cross_entropy(logits, y, reduction="none"))
        if has_cls:
            entropy.update(spatial_entropy(maps, check_finite=False).mean(dim=1))
        if jaccard is not None:
            foreground, valid = (mask.to(device, non_blocking=True) for mask in masks)
            jaccard.update(attention[0].float(), foreground, valid)
        count += y.shape[0]
    count = int(all_reduce_sum(torch.tensor(count, device=device), info))
    if count == 0:
        raise SarvitError("evaluation: the validation set is empty")
    parts = {"loss": loss.compute(), "top1": 100.0 * top1.compute(),
             **({"top5": 100.0 * top5.compute()} if top5 is not None else {}),
             **({"entropy": entropy.compute()} if has_cls else {})}
    values = dict(zip(parts, torch.stack(list(parts.values())).tolist()))  # one host read
    metrics = {"loss": values["loss"], "top1": values["top1"], "top5": values.get("top5"),
               "entropy": values.get("entropy"), "images": count}
    if jaccard is not None:
        metrics["jaccard"] = 100.0 * float(jaccard.compute()["jaccard"])
    return metrics
