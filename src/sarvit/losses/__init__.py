"""Attention regularizers: one file each, a function (maps -> per-map values) and an nn.Module (-> scalar)."""
from .spatial_entropy import SpatialEntropyLoss, check_maps, spatial_entropy

__all__ = ["spatial_entropy", "SpatialEntropyLoss", "check_maps"]
