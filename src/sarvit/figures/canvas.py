"""Figures drawn off-screen without pyplot: no backend is chosen and no global state is touched, so drawing
from a notebook or a training run leaves ``matplotlib.get_backend()`` and pyplot's figure list as they were.

Example:
    >>> figure, axis = new_figure(figsize=(2, 2))
    >>> _ = axis.plot([0, 1], [1, 0])
    >>> figure_pixels(figure, dpi=10).shape
    (20, 20, 3)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..checkpoints import write_atomic
from ..checks import check_number
from ..errors import SarvitTypeError

__all__ = ["figure_pixels", "new_figure", "save_figure", "save_pixels"]


def new_figure(rows: int = 1, columns: int = 1, *, figsize: tuple[float, float], squeeze: bool = True,
               **subplot_kw: Any) -> tuple[Figure, Any]:
    """A ``Figure`` on its own Agg canvas and its ``rows x columns`` axes (``Figure.subplots``'s return)."""
    check_number(rows, "rows", low=1, integer=True)
    check_number(columns, "columns", low=1, integer=True)
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=squeeze, **subplot_kw)


def save_figure(figure: Figure, path: Union[str, Path], dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG (parent folders created; atomic, no link followed:
    :func:`sarvit.checkpoints.write_atomic`)."""
    _check_figure(figure)
    return write_atomic(path, lambda file: figure.savefig(file, dpi=dpi, format="png"))


def figure_pixels(figure: Figure, dpi: int = 100) -> np.ndarray:
    """``figure`` rendered as ``uint8 [height, width, 3]``."""
    _check_figure(figure)
    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_pixels(pixels: np.ndarray, path: Union[str, Path]) -> Path:
    """Write ``uint8 [height, width, 3]`` as a PNG (parent folders created)."""
    from PIL import Image

    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
        found = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise SarvitTypeError(f"pixels must be a uint8 numpy array [height, width, 3], got {found}")
    return write_atomic(path, lambda file: Image.fromarray(pixels).save(file, format="PNG"))


def _check_figure(figure: Any) -> None:
    if not isinstance(figure, Figure):
        raise SarvitTypeError(f"figure must be a matplotlib.figure.Figure, got {type(figure).__name__}")
