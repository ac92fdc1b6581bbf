"""timm ViTs with SAR's last-block surgery, the [CLS] map capture, and weight loading."""
from .arvit import ARViT  # also registers "arvit_base" with timm
from .sar_vit import SIMILARITIES, SARBlock, SARConfig, create_model, sar_config
from .weights import LoadReport, load_weights

__all__ = ["SIMILARITIES", "SARBlock", "SARConfig", "LoadReport", "create_model", "load_weights", "sar_config"]
