"""Figures drawn from tensors (attention maps and their regions), shared by training and analysis."""
from .attention import (COMPONENT_COLOURS, attention_figure, denormalize, figure_pixels, save_figure, save_pixels,
                        upsample_maps)

__all__ = ["COMPONENT_COLOURS", "attention_figure", "denormalize", "figure_pixels", "save_figure", "save_pixels",
           "upsample_maps"]
