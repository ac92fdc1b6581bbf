"""Drawing the synthetic scenes: the class shapes as implicit functions, textured backgrounds, distractors,
occluders. :class:`ScenePainter` draws one image and its exact foreground from a random generator."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

_SQRT3 = math.sqrt(3.0)


# Each shape is an implicit function of object-frame coordinates (u, v) -> bool; the shape fits in the
# unit disc so that one radius sets its scale. Shapes differ in topology and outline, never in colour.
def _disc(u, v):
    return u * u + v * v <= 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.75


def _triangle(u, v):
    u, v = u * 0.95, v * 0.95 + 0.1  # centre the equilateral triangle inscribed in the unit circle
    return (v >= -0.5) & (_SQRT3 * u + v <= 1.0) & (-_SQRT3 * u + v <= 1.0)


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


def _ring(u, v):
    radius_sq = u * u + v * v
    return (radius_sq <= 1.0) & (radius_sq >= 0.36)


def _star(u, v):
    # Five points: the boundary radius falls linearly from 1 at a point to 0.42 between two points.
    sector = 2.0 * math.pi / 5.0
    phase = np.mod(np.arctan2(v, u) + math.pi / 2.0, sector)
    from_point = np.minimum(phase, sector - phase) / (sector / 2.0)
    return u * u + v * v <= (1.0 - 0.58 * from_point) ** 2


def _ellipse(u, v):
    return u * u + 4.0 * v * v <= 1.0


def _crescent(u, v):
    return (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.64)


def _l_shape(u, v):
    vertical = (u >= -0.75) & (u <= -0.15) & (np.abs(v) <= 0.9)
    foot = (u >= -0.75) & (u <= 0.75) & (v >= 0.3) & (v <= 0.9)
    return vertical | foot


def _arrow(u, v):
    shaft = (u >= -0.95) & (u <= 0.1) & (np.abs(v) <= 0.2)
    head = (u >= 0.1) & (u <= 0.95) & (np.abs(v) <= 0.65 * (0.95 - u) / 0.85)
    return shaft | head


def _tee(u, v):
    bar = (np.abs(u) <= 0.9) & (v >= -0.9) & (v <= -0.35)
    stem = (np.abs(u) <= 0.22) & (v >= -0.35) & (v <= 0.9)
    return bar | stem


def _half_disc(u, v):
    v = v + 0.35  # put the flat side below the centre so the half disc is centred
    return (u * u + v * v <= 1.0) & (v >= 0.0)


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disc": _disc,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
    "ring": _ring,
    "star": _star,
    "ellipse": _ellipse,
    "crescent": _crescent,
    "l_shape": _l_shape,
    "arrow": _arrow,
    "tee": _tee,
    "half_disc": _half_disc,
}
class ScenePainter:
    """Draws object-on-clutter scenes of side ``img_size``: ``paint(rng, shape) -> (image uint8 [S, S, 3],
    foreground bool [S, S])``. Holds the pixel coordinates and the blotch upsampling matrix all scenes share."""

    def __init__(self, img_size: int) -> None:
        self.img_size = img_size
        self._coords = np.arange(img_size, dtype=np.float32) + 0.5
        self._blotch_upsample = _bilinear_matrix(img_size, _BLOTCH_GRID)

    def paint(self, rng: np.random.Generator, shape: str) -> tuple[np.ndarray, np.ndarray]:
        """One scene with a ``shape`` object (a key of :data:`SHAPES`):
        ``(image uint8 [S, S, 3], foreground bool [S, S])``."""
        size = self.img_size
        canvas = self._background(rng)
        self._draw_distractors(rng, canvas)

        radius = size * rng.uniform(0.24, 0.38)
        margin = 0.9 * radius  # lets the object touch or barely cross the border
        centre_x, centre_y = rng.uniform(margin, size - margin, size=2)
        rows, cols = _window(centre_y, centre_x, 1.45 * radius, size)
        ys, xs = self._coords[rows, None], self._coords[None, cols]
        u, v = _object_frame(rng, xs - centre_x, ys - centre_y, radius)
        window_mask = SHAPES[shape](u, v)

        fill = _object_fill(rng, canvas[rows, cols], window_mask, u)
        occluder = None
        if rng.random() < 0.25:
            occluder, solid_colour = _occluding_bar(rng, xs - centre_x, ys - centre_y, radius)
            window_mask &= ~occluder
        canvas[rows, cols] = np.where(window_mask[..., None], fill, canvas[rows, cols])
        if occluder is not None and solid_colour is not None:
            canvas[rows, cols] = np.where(occluder[..., None], solid_colour, canvas[rows, cols])

        noise_level = rng.uniform(0.0, 0.04)
        canvas += noise_level * rng.standard_normal(canvas.shape, dtype=np.float32)
        image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        mask = np.zeros((size, size), dtype=bool)
        mask[rows, cols] = window_mask
        return image, mask

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A textured background, float32 [S, S, 3] in [0, 1]: a colour pair mixed by a random texture."""
        size = self.img_size
        # The second colour is a moderate shift of the first, so the texture is visible but stays a
        # backdrop: the object (drawn to contrast with it) is the strongest edge in the image.
        colour_a = rng.uniform(0.0, _BACKGROUND_MAX, size=3).astype(np.float32)
        colour_b = np.clip(colour_a + rng.uniform(-0.2, 0.2, size=3).astype(np.float32), 0.0, _BACKGROUND_MAX)
        kind = rng.integers(3)
        if kind == 2:  # low-frequency blotches
            grid = rng.random((_BLOTCH_GRID, _BLOTCH_GRID), dtype=np.float32)
            mix = self._blotch_upsample @ grid @ self._blotch_upsample.T
        else:
            angle = rng.uniform(0.0, 2.0 * math.pi)
            ramp = (np.cos(angle) * self._coords[None, :] + np.sin(angle) * self._coords[:, None]) / size
            if kind == 0:  # linear gradient
                mix = ramp - ramp.min()
                mix /= max(float(mix.max()), 1e-6)
            else:  # stripes, soft or hard
                frequency = rng.uniform(2.0, 9.0)
                mix = 0.5 + 0.5 * np.sin(2.0 * math.pi * frequency * ramp + rng.uniform(0.0, 2.0 * math.pi))
                if rng.random() < 0.5:
                    mix = (mix > 0.5).astype(np.float32)
        mix = mix.astype(np.float32)[..., None]
        return colour_a * (1.0 - mix) + colour_b * mix

    def _draw_distractors(self, rng: np.random.Generator, canvas: np.ndarray) -> None:
        """Paint 2-8 short strokes (thin bars, not a class shape) in random colours onto ``canvas`` in place."""
        size = self.img_size
        for _ in range(rng.integers(1, 5)):
            half_length = size * rng.uniform(0.03, 0.07)
            half_width = max(0.6, size * rng.uniform(0.006, 0.015))
            centre_x, centre_y = rng.uniform(0.0, size, size=2)
            rows, cols = _window(centre_y, centre_x, half_length + half_width, size)
            angle = rng.uniform(0.0, math.pi)
            dx, dy = self._coords[None, cols] - centre_x, self._coords[rows, None] - centre_y
            along = np.cos(angle) * dx + np.sin(angle) * dy
            across = -np.sin(angle) * dx + np.cos(angle) * dy
            stroke = (np.abs(along) <= half_length) & (np.abs(across) <= half_width)
            canvas[rows, cols][stroke] = rng.random(3, dtype=np.float32)


_BLOTCH_GRID = 5  # control points per side of the blotch texture
_BACKGROUND_MAX = 0.55  # backgrounds are darker than objects on average (object colours: 0.35..1)


def _bilinear_matrix(size: int, grid: int) -> np.ndarray:
    """[size, grid] matrix M such that M @ G @ M.T bilinearly upsamples a [grid, grid] field to [size, size]."""
    positions = (np.arange(size) + 0.5) / size * (grid - 1)
    left = np.clip(np.floor(positions).astype(int), 0, grid - 2)
    weight = (positions - left).astype(np.float32)
    matrix = np.zeros((size, grid), dtype=np.float32)
    matrix[np.arange(size), left] = 1.0 - weight
    matrix[np.arange(size), left + 1] = weight
    return matrix


def _window(centre_y: float, centre_x: float, extent: float, size: int) -> tuple[slice, slice]:
    """Row and column slices of the image covering a square of half-side ``extent`` around a point."""
    def span(centre):
        return slice(max(0, int(centre - extent)), min(size, int(centre + extent) + 2))

    return span(centre_y), span(centre_x)


def _object_frame(rng, dx: np.ndarray, dy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets from the object centre -> object-frame (u, v): rotated, mirrored, mildly stretched."""
    angle = rng.uniform(0.0, 2.0 * math.pi)
    stretch = rng.uniform(0.9, 1.1)
    mirror = 1.0 if rng.random() < 0.5 else -1.0
    cos, sin = math.cos(angle), math.sin(angle)
    u = (cos * dx + sin * dy) / (radius * stretch)
    v = mirror * (cos * dy - sin * dx) * stretch / radius
    return u, v


def _object_fill(rng, background: np.ndarray, shape: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Object colour field [h, w, 3]: flat or shaded, chosen to contrast with the background it covers."""
    under = background[shape].mean(axis=0) if shape.any() else background.reshape(-1, 3).mean(axis=0)
    for _ in range(16):  # resample until the colour stands out from what lies under the object
        colour = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
        if np.abs(colour - under).sum() > 0.9:
            break
    if rng.random() < 0.5:
        return np.broadcast_to(colour, shape.shape + (3,))
    shading = 1.0 + rng.uniform(-0.25, 0.25) * u.astype(np.float32)  # a gentle light gradient across the object
    return colour * shading[..., None]


def _occluding_bar(rng, dx: np.ndarray, dy: np.ndarray, radius: float):
    """A bar crossing the object near its centre: (bool [h, w] region, solid colour [3] or None).

    ``None`` means the bar shows the background (the object looks cut in two); otherwise it is a solid
    pole painted over object and background alike.
    """
    angle = rng.uniform(0.0, math.pi)
    offset = rng.uniform(-0.2, 0.2) * radius
    half_width = max(1.0, rng.uniform(0.1, 0.2) * radius)
    distance = -math.sin(angle) * dx + math.cos(angle) * dy - offset
    bar = np.abs(distance) <= half_width
    solid_colour = rng.random(3, dtype=np.float32) if rng.random() < 0.5 else None
    return bar, solid_colour
