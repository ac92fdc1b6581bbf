"""sarvit: Spatial Attention-based Regularization (SAR) for Vision Transformers.

The public API (names other code relies on):

* :func:`connected_components` - exact 8/4-connected labelling of ``[..., h, w]`` bool maps.
* :func:`spatial_entropy` / :class:`SpatialEntropyLoss` - Eq. 5-9 of the SAR papers.
* :func:`create_model` - a timm ViT with the SAR last-block surgery and the similarity-map capture.

``import sarvit`` imports :mod:`sarvit.models` (hence torch and timm), which registers sarvit's timm models
(``arvit_base``) with timm's ordinary ``@register_model``: nothing else is changed in any other library.
"""
from . import models
from .errors import SarvitError, SarvitTypeError
from .losses import SpatialEntropyLoss, spatial_entropy
from .models import create_model, load_weights
from .ops import connected_components

__version__ = "0.2.0"

__all__ = ["SarvitError", "SarvitTypeError", "SpatialEntropyLoss", "connected_components", "create_model",
           "load_weights", "models", "spatial_entropy"]
