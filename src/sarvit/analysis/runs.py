"""The bodies of ``segment-eval``, ``analyze`` and ``visualize``: a model and batches in, plain results out."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from ..checkpoints import fresh_path
from ..errors import SarvitError
from ..figures import attention_figure, denormalize, save_figure
from ..losses import spatial_entropy
from ..metrics import AttentionJaccard, HeadStats, segmentation_jaccard
from ..models.pyramids import capture_blocks
from .attention import attention_maps

__all__ = ["segmentation_report", "head_report", "draw_attention", "num_heads"]


def num_heads(model: nn.Module) -> int:
    """Heads of the model's last block (a pyramid's: its last stage's), those whose maps the analysis reads."""
    return capture_blocks(model)[-1].attn.num_heads


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def segmentation_report(model: nn.Module, loader: Iterable, keep: float, ids: Optional[Sequence[str]] = None) -> dict:
    """DINO's protocol over ``loader`` (items ``(image, target, foreground, valid)``): the
    :class:`~sarvit.metrics.AttentionJaccard` summary plus ``per_image`` rows (``index``, ``id`` when ``ids``
    are given, ``jaccard``, ``best_head``)."""
    metric = AttentionJaccard(num_heads(model), keep=keep).to(_device(model))
    best, heads = [], []
    for images, _, foreground, valid in loader:
        _, _, attention = attention_maps(model, images)
        result = segmentation_jaccard(attention, foreground, valid, keep)
        metric.update(result)
        best.append(result.best)
        heads.append(result.best_head)
    totals = {key: value.cpu() for key, value in metric.compute().items()}
    summary = {"jaccard": float(totals["jaccard"]), "per_head": totals["per_head"].reshape(-1).tolist(),
               "best_head_counts": totals["best_head_counts"].reshape(-1).tolist(), "count": int(totals["count"])}
    if not summary["count"]:
        return {**summary, "per_head": [], "best_head_counts": [], "per_image": []}
    best_all, heads_all = torch.cat(best).cpu().tolist(), torch.cat(heads).cpu().tolist()
    summary["per_image"] = [
        {"index": index, **({"id": ids[index]} if ids is not None else {}), "jaccard": value, "best_head": head}
        for index, (value, head) in enumerate(zip(best_all, heads_all))
    ]
    return summary


def head_report(model: nn.Module, loader: Iterable) -> dict:
    """Per-head spatial entropy and component statistics of the [CLS] maps S over ``loader`` (the image is the
    first element of each item), from :meth:`sarvit.metrics.HeadStats.compute`, as plain data: ``{"count",
    "per_head": [{"head", "spatial_entropy", "spatial_entropy_std", "components", "single_component"}],
    "mean": {"spatial_entropy", "components", "single_component"}}``."""
    metric = HeadStats(num_heads(model)).to(_device(model))
    for images, *_ in loader:
        _, S, _ = attention_maps(model, images)
        metric.update(S)
    totals = {key: value.cpu().reshape(-1) for key, value in metric.compute().items()}  # one head: 0-d
    count = int(totals.pop("count"))
    if not count:
        return {"count": 0, "per_head": [], "mean": {}}
    per_head = [{"head": head, **{key: float(values[head]) for key, values in totals.items()}}
                for head in range(metric.num_heads)]
    mean = {key: float(totals[key].mean()) for key in ("spatial_entropy", "components", "single_component")}
    return {"count": count, "per_head": per_head, "mean": mean}


def draw_attention(model: nn.Module, batches: Iterable, output_dir: Path, *, keep: float, dpi: int,
                   mean: Sequence[float], std: Sequence[float]) -> list[Path]:
    """One PNG per image (see :func:`~sarvit.analysis.attention_figure`) from ``batches`` of
    ``(images, foreground or None, valid or None, titles, file names)``; returns the files written."""
    written = []
    for images, foreground, valid, titles, names in batches:
        _, S, A = attention_maps(model, images)
        entropy = spatial_entropy(S).cpu()
        per_head = None if foreground is None else segmentation_jaccard(A, foreground, valid, keep).per_head.cpu()
        A = A.cpu()
        for index, name in enumerate(names):
            title = titles[index]
            if per_head is not None:
                title += f"  (best head IoU {per_head[index].max():.2f})"
            figure = attention_figure(
                denormalize(images[index], mean, std), A[index], entropy[index], keep=keep,
                foreground=None if foreground is None else foreground[index],
                head_jaccard=None if per_head is None else per_head[index].tolist(), title=title,
            )
            written.append(save_figure(figure, fresh_path(Path(output_dir) / name), dpi=dpi))  # none overwritten
    if not written:
        raise SarvitError("visualize: expected at least one image, found none")
    return written
