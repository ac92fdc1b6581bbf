"""Pictures during training: the attention of a fixed set of validation images, every few epochs and at the end.

Each picture is ``attention/epoch_NNN.png`` (epochs counted from 1) with one block per image, drawn as
``sarvit visualize`` draws it (:func:`sarvit.figures.attention_figure`: the image, each head's raw [CLS]
attention and its 60 %-mass regions), and the same image in TensorBoard's image tab (tag ``attention``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..figures import attention_figure, denormalize, figure_pixels, save_pixels
from ..losses import spatial_entropy

__all__ = ["AttentionPictures", "picture_epochs"]

PICTURES_PER_RUN = 5


def picture_epochs(epochs: int, every: Optional[int]) -> set[int]:
    """The epochs (0-based) that get a picture: every ``every`` epochs (default: about five over the run) and
    the last; ``every == 0``: none."""
    if every == 0:
        return set()
    every = every or max(1, round(epochs / PICTURES_PER_RUN))
    return {epoch for epoch in range(epochs) if (epoch + 1) % every == 0} | {epochs - 1}


class AttentionPictures:
    """Draws the same ``count`` validation images (spread over the set) with a model's current attention."""

    def __init__(self, dataset, output_dir: Path, *, count: int = 3, keep: float = 0.6, writer=None,
                 mean=None, std=None) -> None:
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        indices = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int).tolist()
        items = [dataset[index] for index in indices]
        self.images = torch.stack([item[0] for item in items])
        # the synthetic set's validation items carry their foreground mask, outlined in the picture
        self.masks = [item[2] if len(item) > 2 else None for item in items]
        self.folder = Path(output_dir) / "attention"
        self.keep, self.writer = keep, writer
        self.mean, self.std = mean or IMAGENET_DEFAULT_MEAN, std or IMAGENET_DEFAULT_STD
        self.written: list[Path] = []

    @torch.no_grad()
    def draw(self, model: torch.nn.Module, epoch: int) -> Path:
        """Write ``attention/epoch_NNN.png`` (``epoch`` 0-based) and its TensorBoard image; returns the path."""
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            _, maps, attention = model(self.images.to(device), return_maps=True, return_attention=True)
        finally:
            model.train(was_training)
        entropy = spatial_entropy(maps.float(), check_finite=False).cpu()
        blocks = []
        for index, image in enumerate(self.images):
            figure = attention_figure(denormalize(image, self.mean, self.std), attention[index].float().cpu(),
                                      entropy[index], keep=self.keep, foreground=self.masks[index],
                                      title=f"epoch {epoch + 1}, validation image {index + 1}", panel_inches=1.6)
            blocks.append(figure_pixels(figure, dpi=70))
        width = max(block.shape[1] for block in blocks)
        pixels = np.concatenate([np.pad(block, ((0, 0), (0, width - block.shape[1]), (0, 0)), constant_values=255)
                                 for block in blocks])
        path = save_pixels(pixels, self.folder / f"epoch_{epoch + 1:03d}.png")
        if self.writer is not None:
            self.writer.add_image("attention", pixels, epoch, dataformats="HWC")  # the scalars' step
            self.writer.flush()
        self.written.append(path)
        return path
