"""Small real-image classification sets built from images that ship inside packages, written as image folders.

scikit-learn's 1,797 handwritten digits (8 x 8, ten classes) are drawn onto a larger canvas in one of several
:data:`LAYOUTS`: where the digit sits, how big it is and what clutter surrounds it. The first 1,000 images (in a
fixed shuffle) train, the other 797 validate, as ``root/train/<class>/*.png`` and ``root/val/<class>/*.png``, so
``sarvit train --data-set folder --data-path root`` reads them like any user's folder.

The clutter is made of the same strokes as the object (pieces of other digits) plus lines and noise, so that the
object is small and not separable from its background by colour or texture alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SarvitError

__all__ = ["Layout", "LAYOUTS", "digits_canvases", "write_digits_folder", "TRAIN_IMAGES"]

TRAIN_IMAGES = 1_000  # of sklearn's 1,797 digits; the remaining 797 are the validation split


@dataclass(frozen=True)
class Layout:
    """How a digit is drawn: ``canvas`` side (px), the digit's side range (px), where it may sit (``centre`` or
    anywhere), how many pieces of other digits and lines clutter the background, the noise level (0-1)."""

    canvas: int = 64
    digit: tuple[int, int] = (24, 32)
    anywhere: bool = True
    fragments: int = 4
    lines: int = 3
    noise: float = 0.08


LAYOUTS: dict[str, Layout] = {
    # a digit of 40-50 % of the picture's side somewhere on clutter of digit strokes: the symptoms of issue 18
    "clutter": Layout(),
    # the same digits, large and centred on a plain noisy background: the easy control
    "centre": Layout(digit=(40, 48), anywhere=False, fragments=0, lines=0, noise=0.1),
    # the digit filling a 32 px picture, no clutter or noise: the control on which a small ViT learns in minutes
    "plain": Layout(canvas=32, digit=(32, 32), anywhere=False, fragments=0, lines=0, noise=0.0),
    # small digits (a fifth of the picture) anywhere, light clutter
    "small": Layout(digit=(12, 16), fragments=3, lines=2, noise=0.1),
}


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SarvitError("the digits sets need scikit-learn: pip install 'sarvit[real]'") from None
    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray((image * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR),
                      dtype=np.float32) / 255.0


def _paste(canvas: np.ndarray, stroke: np.ndarray, colour: np.ndarray, top: int, left: int) -> None:
    """Blend ``stroke`` (an [h, w] alpha in 0-1) of ``colour`` into ``canvas`` [S, S, 3] at (top, left), clipped."""
    side = canvas.shape[0]
    h, w = stroke.shape
    t0, l0, t1, l1 = max(0, top), max(0, left), min(side, top + h), min(side, left + w)
    if t1 <= t0 or l1 <= l0:
        return
    alpha = stroke[t0 - top:t1 - top, l0 - left:l1 - left, None]
    canvas[t0:t1, l0:l1] = canvas[t0:t1, l0:l1] * (1 - alpha) + colour * alpha


def _draw(digit: np.ndarray, others: np.ndarray, layout: Layout, rng: np.random.Generator) -> np.ndarray:
    side = layout.canvas
    background = rng.uniform(0.0, 0.6, size=3).astype(np.float32)
    canvas = np.broadcast_to(background, (side, side, 3)).copy()
    canvas += layout.noise * rng.standard_normal((side, side, 3)).astype(np.float32)
    ink = lambda: np.clip(1.0 - background + rng.uniform(-0.3, 0.3, size=3), 0, 1).astype(np.float32)  # noqa: E731
    for other in others[: layout.fragments]:  # a piece (a quarter to a half) of another digit
        big = _resized(other, int(rng.integers(*layout.digit, endpoint=True)))
        h, w = (int(rng.integers(big.shape[0] // 4, big.shape[0] // 2 + 1)) for _ in range(2))
        top, left = (int(rng.integers(0, big.shape[0] - h + 1)) for _ in range(2))
        _paste(canvas, big[top:top + h, left:left + w], ink(), *(int(v) for v in rng.integers(-4, side, size=2)))
    for _ in range(layout.lines):
        (r0, c0), (r1, c1) = rng.integers(0, side, size=(2, 2))
        steps = max(abs(r1 - r0), abs(c1 - c0)) + 1
        rows, cols = np.linspace(r0, r1, steps).round().astype(int), np.linspace(c0, c1, steps).round().astype(int)
        canvas[rows, cols] = ink()
    size = int(rng.integers(*layout.digit, endpoint=True))
    top, left = ((int(rng.integers(0, side - size + 1)) for _ in range(2)) if layout.anywhere
                 else ((side - size) // 2,) * 2)
    _paste(canvas, _resized(digit, size), ink(), top, left)
    return (np.clip(canvas, 0, 1) * 255).astype(np.uint8)


def digits_canvases(layout: str | Layout, seed: int = 0, limit: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits drawn in ``layout`` -> ``(images [N, S, S, 3] uint8, labels [N])``, in a fixed shuffle
    (the first :data:`TRAIN_IMAGES` are the training split). ``seed`` draws the shuffle, placement and clutter.

    Example:
        >>> images, labels = digits_canvases("clutter", limit=4)
        >>> images.shape, images.dtype, labels.shape
        ((4, 64, 64, 3), dtype('uint8'), (4,))
    """
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        layout = LAYOUTS[layout]
    digits, labels = _load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits))[:limit]
    images = np.stack([_draw(digits[i], digits[rng.integers(0, len(digits), size=layout.fragments)], layout, rng)
                       for i in order])
    return images, labels[order]


def write_digits_folder(root: str | Path, layout: str = "clutter", seed: int = 0) -> Path:
    """Write ``root/train/<digit>/*.png`` (1,000) and ``root/val/<digit>/*.png`` (797) for ``layout``; an
    already complete folder is left as it is. Returns ``root``."""
    from PIL import Image

    root = Path(root)
    done = root / ".complete"
    if done.is_file():
        return root
    images, labels = digits_canvases(layout, seed)
    for index, (image, label) in enumerate(zip(images, labels)):
        split = "train" if index < TRAIN_IMAGES else "val"
        folder = root / split / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    done.write_text(f"{layout} seed {seed}\n")
    return root


if __name__ == "__main__":  # python -m sarvit.data.real_images ROOT: one folder per layout under ROOT
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m sarvit.data.real_images ROOT")
    for name in LAYOUTS:
        print(write_digits_folder(Path(sys.argv[1]) / f"digits-{name}", name))
