"""Pictures of the last-block attention, drawn from tensors: what `sarvit visualize` writes and what a training
run writes to attention/epoch_NNN.png (a room below train and analysis, so that both draw the same picture).

Layout of :func:`attention_figure` (``C = min(H, max_columns)`` columns):

* row 0: the image; the ground-truth foreground outlined on it when known; a line saying which threshold
  each row uses;
* then, per group of ``C`` heads, two rows: the raw post-softmax [CLS] attention of each head with its colour
  bar (titled ``head h: SE=<spatial entropy of S>``, the loss's regions of S > mean(S)) and, below it, the
  ``keep``-mass thresholded map (DINO's) on a dimmed copy of the image, each 8-connected component in its own
  colour (titled with the number of regions, and, when a mask is known, the head's Jaccard with the
  foreground, whose outline is drawn in white).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_maps, check_tensor
from ..errors import SarvitError
from ..metrics import mass_threshold
from ..ops import connected_components
from .canvas import new_figure

__all__ = ["attention_figure", "denormalize", "upsample_maps", "COMPONENT_COLOURS"]

# Distinct, saturated colours for components 1..n (cycled beyond 10).
COMPONENT_COLOURS = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ],
    dtype=np.float32,
) / 255.0


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of patch-grid maps ``[B, H, k, k]`` to pixels ``[B, H, *size]``.

    For an image side that is a multiple of the grid this repeats every patch value over its patch
    (DINO's ``interpolate(scale_factor=patch_size, mode="nearest")``); otherwise it is
    ``F.interpolate(size=size, mode="nearest")``. Bool maps stay bool.
    """
    check_tensor(maps, "maps", "B, H, k, k")
    check_maps(maps.float() if maps.dtype == torch.bool else maps, "maps")
    size = (size, size) if isinstance(size, int) else tuple(size)
    source = maps.to(torch.uint8) if maps.dtype == torch.bool else maps
    out = F.interpolate(source, size=size, mode="nearest")
    return out.bool() if maps.dtype == torch.bool else out


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``[3, S, S]`` tensor -> ``uint8 [S, S, 3]`` for display."""
    check_tensor(image, "image", "C, H, W", dtype="float")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != image.shape[0]:
            raise SarvitError(f"{name} must give one value per channel ({image.shape[0]}), got {tuple(values)}")
    mean_t = torch.tensor(mean, dtype=torch.float32).reshape(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).reshape(3, 1, 1)
    pixels = (image.detach().float().cpu() * std_t + mean_t).clamp(0.0, 1.0)
    return (pixels.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def _component_overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Dimmed greyscale image with every labelled pixel (1..n) painted in its component's colour."""
    grey = image.astype(np.float32).mean(axis=-1, keepdims=True) / 255.0
    canvas = np.repeat(0.25 + 0.35 * grey, 3, axis=-1)
    painted = labels > 0
    if painted.any():
        colours = COMPONENT_COLOURS[(labels[painted] - 1) % len(COMPONENT_COLOURS)]
        canvas[painted] = 0.3 * canvas[painted] + 0.7 * colours
    return canvas


def attention_figure(
    image: np.ndarray,
    attention: torch.Tensor,
    entropy: torch.Tensor | Sequence[float] | None = None,
    *,
    keep: float = 0.6,
    foreground: torch.Tensor | np.ndarray | None = None,
    head_jaccard: Sequence[float] | None = None,
    title: str | None = None,
    max_columns: int = 6,
    panel_inches: float = 2.0,
):
    """One image's attention as a matplotlib Figure (layout in the module docstring).

    Args:
        image: ``uint8 [S, S, 3]`` the image as the model saw it (see :func:`denormalize`).
        attention: ``[H, k, k]`` post-softmax [CLS] attention over the patches.
        entropy: ``[H]`` spatial entropy per head (of the similarity maps ``S``) for the titles.
        keep: mass fraction of the threshold (DINO: 0.6).
        foreground: ``[S, S]`` bool ground-truth foreground, outlined on the image when given.
        head_jaccard: ``[H]`` IoU per head, added to the thresholded panels' titles.
        title: figure title (e.g. the file name).
        max_columns: heads per row.
        panel_inches: size of one panel.

    Returns:
        ``matplotlib.figure.Figure`` on its own Agg canvas (no pyplot); save it with :func:`save_figure`.
    """
    attention = check_tensor(attention, "attention", "H, k, k", dtype="float").detach().float().cpu()
    heads = attention.shape[0]
    size_h, size_w = image.shape[:2]
    kept = mass_threshold(attention[None], keep)
    labels = connected_components(kept, 8)[0]  # [H, k, k], one call for all heads
    regions = labels.flatten(-2).amax(-1).tolist()
    labels_px = upsample_maps(labels[None].float(), (size_h, size_w))[0].long().numpy()
    raw_px = upsample_maps(attention[None], (size_h, size_w))[0].numpy()
    entropy = None if entropy is None else [float(v) for v in (entropy.tolist() if isinstance(entropy, torch.Tensor) else entropy)]

    columns = max(2, min(heads, max_columns))
    groups = -(-heads // columns)
    rows = 1 + 2 * groups
    figure, axes = new_figure(
        rows, columns, figsize=(columns * panel_inches, rows * panel_inches + (0.4 if title else 0.0)), squeeze=False
    )
    for axis in axes.flat:
        axis.set_axis_off()

    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image", fontsize=9)
    fg = None
    if foreground is not None:
        fg = np.asarray(foreground.cpu() if isinstance(foreground, torch.Tensor) else foreground, dtype=np.float32)
        axes[0, 1].imshow(image)
        axes[0, 1].imshow(np.where(fg[..., None] > 0, [0.0, 1.0, 0.3, 0.45], [0.0, 0.0, 0.0, 0.0]))
        axes[0, 1].set_title("ground-truth foreground", fontsize=9)
    outline = fg is not None and 0 < fg.sum() < fg.size
    if outline:
        axes[0, 1].contour(fg, levels=[0.5], colors="white", linewidths=1.0)

    legend = (f"upper rows: [CLS] attention;\nSE = spatial entropy of\nthe regions of S > mean(S)\nlower rows: the "
              f"patches\nholding {round(100 * keep)}% of the attention\nmass, one colour a region")
    if columns > (2 if foreground is not None else 1):  # a free panel in the first row says which row is which
        axes[0, -1].text(0.0, 0.5, legend, fontsize=7, va="center", ha="left", transform=axes[0, -1].transAxes)
    else:
        figure.text(0.01, 0.01, legend.replace("\n", " "), fontsize=6, va="bottom", ha="left", wrap=True)
    for head in range(heads):
        group, column = divmod(head, columns)
        raw_axis, kept_axis = axes[1 + 2 * group, column], axes[2 + 2 * group, column]
        shown = raw_axis.imshow(raw_px[head], cmap="inferno", interpolation="nearest")
        colour_bar = figure.colorbar(shown, ax=raw_axis, fraction=0.046, pad=0.02)
        colour_bar.ax.tick_params(labelsize=6)
        label = f"head {head}"
        if entropy is not None:
            label += f"\nSE={entropy[head]:.2f} (S > mean)"  # spatial_entropy is never negative
        raw_axis.set_title(label, fontsize=8)
        kept_axis.imshow(_component_overlay(image, labels_px[head]), interpolation="nearest")
        if outline:
            kept_axis.contour(fg, levels=[0.5], colors="white", linewidths=0.8)
        count = regions[head]
        caption = f"{round(100 * keep)}% mass: {count} region{'s' if count != 1 else ''}"
        if head_jaccard is not None:
            caption += f"\nIoU={float(head_jaccard[head]):.2f}"
        kept_axis.set_title(caption, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
