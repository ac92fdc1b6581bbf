"""sarvit: Spatial Attention-based Regularization (SAR) for Vision Transformers.

The public API (names other code relies on):

* :func:`connected_components` - exact 8/4-connected labelling of ``[..., h, w]`` bool maps.
* :func:`spatial_entropy` / :class:`SpatialEntropyLoss` - Eq. 5-9 of the SAR papers.
* :func:`create_model` - a timm ViT with the SAR last-block surgery and the similarity-map capture.

The names are imported on first use, so that ``import sarvit`` (and the ``sarvit`` command's ``--help``)
does not load torch.
"""
from importlib import import_module

from .errors import SarvitError

__version__ = "0.1.0"

# public name -> the room that defines it
_LAZY = {
    "SpatialEntropyLoss": "losses", "spatial_entropy": "losses",
    "create_model": "models", "load_weights": "models",
    "connected_components": "ops",
}

__all__ = ["SarvitError", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})
