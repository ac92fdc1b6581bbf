"""timm ViTs with SAR's last-block surgery, capture from one forward pass, ARViT, and weight loading."""
from .arvit import ARViT  # also registers "arvit_base" with timm
from .capture import Capture, capturing, enable_capture, patch_grid
from .sar_vit import SIMILARITIES, SARBlock, SARConfig, create_model, sar_config
from .weights import LoadReport, load_weights

__all__ = [
    "SIMILARITIES",
    "ARViT",
    "Capture",
    "LoadReport",
    "SARBlock",
    "SARConfig",
    "capturing",
    "create_model",
    "enable_capture",
    "load_weights",
    "patch_grid",
    "sar_config",
]
