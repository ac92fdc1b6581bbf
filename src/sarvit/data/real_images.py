"""Small real-image classification sets built from images that ship inside packages, written as image folders.

* ``digits-<layout>``: scikit-learn's 1,797 handwritten digits (8 x 8, ten classes) drawn onto a larger canvas in
  one of several :data:`LAYOUTS`: where the digit sits, how big it is and what clutter surrounds it. The first
  1,000 images (in a fixed shuffle) train, the other 797 validate. The clutter is made of the same strokes as the
  object (pieces of other digits) plus lines and noise, so that the object is small and not separable from its
  background by colour or texture alone.
* ``lfw``: scikit-image's LFW subset, 100 faces and 100 non-faces (25 x 25, grey): two classes, 120 train / 80
  validate, balanced.
* ``photos``: crops of ten of scikit-image's sample photographs, in grey (a class is the photograph, so texture
  and content decide, not colour); each photograph is cut into a 4 x 4 grid of tiles, training crops come from
  12 tiles and validation crops from the other 4, so validation shows parts of the scene never trained on.

Each is written as ``root/train/<class>/*.png`` and ``root/val/<class>/*.png``, so ``sarvit train --data-set
folder --data-path root`` reads it like any user's folder: ``python -m sarvit.data.real_images ROOT`` writes
them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SarvitError

__all__ = ["Layout", "LAYOUTS", "SETS", "digits_canvases", "lfw_faces", "photo_crops", "write_folder",
           "write_digits_folder", "write_real_set", "TRAIN_IMAGES"]

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


def lfw_faces(seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """scikit-image's LFW subset -> ``(images [200, 25, 25, 3] uint8, labels [200], train)``: label 1 a face,
    0 not; a fixed shuffle in which the first ``train`` (120: 60 of each) train and the other 80 validate.

    Example:
        >>> images, labels, train = lfw_faces()
        >>> images.shape, int(labels[:train].sum()), int(labels[train:].sum())
        ((200, 25, 25, 3), 60, 40)
    """
    data = _skimage_data()
    grey = np.asarray(data.lfw_subset())
    grey = (grey * 255).round().astype(np.uint8) if grey.dtype != np.uint8 else grey
    labels = (np.arange(len(grey)) < len(grey) // 2).astype(np.int64)
    rng = np.random.default_rng(seed)
    faces, others = rng.permutation(np.flatnonzero(labels == 1)), rng.permutation(np.flatnonzero(labels == 0))
    per_class = 60
    order = np.concatenate([rng.permutation(np.concatenate([faces[:per_class], others[:per_class]])),
                            rng.permutation(np.concatenate([faces[per_class:], others[per_class:]]))])
    return np.repeat(grey[order, :, :, None], 3, axis=3), labels[order], 2 * per_class


PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket", "moon", "brick", "grass", "gravel")
PHOTO_SIDE = 48  # px of a written crop
_VAL_TILES = {(0, 1), (1, 3), (2, 0), (3, 2)}  # of the 4 x 4 grid: one per row and column


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return image / 255.0


def photo_crops(seed: int = 0, train_per_photo: int = 100, val_per_photo: int = 50
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Grey crops of scikit-image's :data:`PHOTOS` -> ``(images [N, 48, 48, 3] uint8, labels [N], train)``: the
    first ``train`` (``10 * train_per_photo``) train, from 12 of each photograph's 4 x 4 tiles; the rest validate,
    from the other 4. A crop is a random square of 50-100 % of its tile's shorter side, resized to 48 px.

    Example:
        >>> images, labels, train = photo_crops(train_per_photo=2, val_per_photo=1)
        >>> images.shape, train, sorted(set(labels.tolist())) == list(range(10))
        ((30, 48, 48, 3), 20, True)
    """
    data = _skimage_data()
    rng = np.random.default_rng(seed)
    tiles = [(r, c) for r in range(4) for c in range(4)]
    splits: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
    for label, name in enumerate(PHOTOS):
        photo = _grey(getattr(data, name)())
        tile_h, tile_w = photo.shape[0] // 4, photo.shape[1] // 4
        for is_val, count in ((False, train_per_photo), (True, val_per_photo)):
            choices = [tile for tile in tiles if (tile in _VAL_TILES) == is_val]
            for _ in range(count):
                row, col = choices[rng.integers(len(choices))]
                side = int(rng.integers(min(tile_h, tile_w) // 2, min(tile_h, tile_w) + 1))
                top = row * tile_h + int(rng.integers(0, tile_h - side + 1))
                left = col * tile_w + int(rng.integers(0, tile_w - side + 1))
                crop = _resized(photo[top:top + side, left:left + side], PHOTO_SIDE)
                splits[is_val][0].append(np.repeat((crop * 255).round().astype(np.uint8)[:, :, None], 3, axis=2))
                splits[is_val][1].append(label)
    (train_x, train_y), (val_x, val_y) = splits[False], splits[True]
    order = rng.permutation(len(train_x))
    images = np.stack([train_x[i] for i in order] + val_x)
    return images, np.asarray([train_y[i] for i in order] + val_y, dtype=np.int64), len(train_x)


def _skimage_data():
    try:
        import skimage.data
    except ImportError:
        raise SarvitError("the lfw and photos sets need scikit-image: pip install 'sarvit[real]'") from None
    return skimage.data


def write_folder(root: str | Path, images: np.ndarray, labels: np.ndarray, train: int, class_names: list[str],
                 note: str) -> Path:
    """Write ``images`` [N, H, W, 3] uint8 as ``root/train/<class>/*.png`` (the first ``train``) and
    ``root/val/<class>/*.png`` (the rest), then a ``.complete`` marker holding ``note``; a folder that already has
    the marker is left as it is. Returns ``root``."""
    from PIL import Image

    root = Path(root)
    done = root / ".complete"
    if done.is_file():
        return root
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / ("train" if index < train else "val") / class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    done.write_text(note + "\n")
    return root


def write_digits_folder(root: str | Path, layout: str = "clutter", seed: int = 0) -> Path:
    """Write ``root/train/<digit>/*.png`` (1,000) and ``root/val/<digit>/*.png`` (797) for ``layout``; an
    already complete folder is left as it is. Returns ``root``."""
    images, labels = digits_canvases(layout, seed)
    return write_folder(root, images, labels, TRAIN_IMAGES, [f"digit{d}" for d in range(10)], f"{layout} seed {seed}")


SETS = (*(f"digits-{name}" for name in LAYOUTS), "lfw", "photos")


def write_real_set(root: str | Path, name: str, seed: int = 0) -> Path:
    """Write the real-image set ``name`` (one of :data:`SETS`) as an image folder at ``root``."""
    if name.startswith("digits-") and name[len("digits-"):] in LAYOUTS:
        return write_digits_folder(root, name[len("digits-"):], seed)
    if name == "lfw":
        images, labels, train = lfw_faces(seed)
        return write_folder(root, images, labels, train, ["non-face", "face"], f"lfw seed {seed}")
    if name == "photos":
        images, labels, train = photo_crops(seed)
        return write_folder(root, images, labels, train, list(PHOTOS), f"photos seed {seed}")
    raise ValueError(f"name must be one of {', '.join(SETS)}, got {name!r}")


if __name__ == "__main__":  # python -m sarvit.data.real_images ROOT [SET ...]: one folder per set under ROOT
    import sys

    if len(sys.argv) < 2 or any(name not in SETS for name in sys.argv[2:]):
        raise SystemExit(f"usage: python -m sarvit.data.real_images ROOT [SET ...] (SET: {' '.join(SETS)})")
    for name in sys.argv[2:] or SETS:
        print(write_real_set(Path(sys.argv[1]) / name, name))
