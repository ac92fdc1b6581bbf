"""sarvit: Spatial Attention-based Regularization (SAR) for Vision Transformers.

The public API (names other code relies on):

* :func:`connected_components` - exact 8/4-connected labelling of ``[..., h, w]`` bool maps.
* :func:`spatial_entropy` / :class:`SpatialEntropyLoss` - Eq. 5-9 of the SAR papers.
* :func:`create_model` - a timm ViT with the SAR last-block surgery and the similarity-map capture.

The names are imported on first use, so that ``import sarvit`` (and the ``sarvit`` command's ``--help``)
does not load torch. sarvit's timm models (``arvit_base``) are registered with timm as soon as both
sarvit and timm are imported, in either order.
"""
import importlib.abc
import importlib.util
import sys
from importlib import import_module

from .errors import SarvitError

__version__ = "0.2.0"

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


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """Imports ``sarvit.models`` (which registers its timm models) right after timm itself is imported."""

    def find_spec(self, name, path, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        run_timm = spec.loader.exec_module

        def run_timm_then_register(module):
            run_timm(module)
            import_module(".models", __name__)

        spec.loader.exec_module = run_timm_then_register
        return spec


if "timm" in sys.modules:
    import_module(".models", __name__)
else:
    sys.meta_path.insert(0, _RegisterAfterTimm())
