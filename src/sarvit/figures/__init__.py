"""Figures drawn from tensors (attention maps and their regions), shared by training and analysis; every
figure is a ``matplotlib.figure.Figure`` on its own canvas (:func:`new_figure`), never pyplot's."""
from .attention import COMPONENT_COLOURS, attention_figure, denormalize, upsample_maps
from .canvas import figure_pixels, new_figure, save_figure, save_pixels

__all__ = ["COMPONENT_COLOURS", "attention_figure", "denormalize", "figure_pixels", "new_figure", "save_figure",
           "save_pixels", "upsample_maps"]
