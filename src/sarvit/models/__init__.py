"""timm ViTs with SAR's last-block surgery, capture from one forward pass, ARViT, weight loading and the model
description (ModelSpec)."""
from .arvit import ARViT  # also registers "arvit_base" with timm
from . import hybrids  # registers the hybrid VTs (t2t_vit_14) with timm
from .hub import SAR_VIT  # registers "sar_vit" with timm
from .capture import Capture, capturing, enable_capture, has_class_token, patch_grid
from .sar_vit import SIMILARITIES, SARBlock, SARConfig, create_model, sar_config
from .spec import ModelSpec, infer_model_kwargs
from .weights import LoadReport, load_weights

__all__ = [
    "SAR_VIT",
    "SIMILARITIES",
    "ARViT",
    "Capture",
    "has_class_token",
    "LoadReport",
    "ModelSpec",
    "SARBlock",
    "SARConfig",
    "capturing",
    "create_model",
    "enable_capture",
    "infer_model_kwargs",
    "load_weights",
    "patch_grid",
    "sar_config",
]
