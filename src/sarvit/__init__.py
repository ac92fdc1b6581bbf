"""sarvit: Spatial Attention-based Regularization (SAR) for Vision Transformers.

The public API (names other code relies on):

* :func:`connected_components` - exact 8/4-connected labelling of ``[..., h, w]`` bool maps.
* :func:`spatial_entropy` / :class:`SpatialEntropyLoss` - Eq. 5-9 of the SAR papers.
* :func:`create_model` - a timm ViT with the SAR last-block surgery and the similarity-map capture.
"""
from .errors import SarvitError
from .losses import SpatialEntropyLoss, spatial_entropy
from .models import create_model, load_weights
from .ops import connected_components

__version__ = "0.1.0"

__all__ = [
    "SarvitError",
    "SpatialEntropyLoss",
    "connected_components",
    "create_model",
    "load_weights",
    "spatial_entropy",
]
