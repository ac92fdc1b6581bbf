"""Attention regularizers: one file each, a function (per-map or per-image values) and an nn.Module (-> scalar).

``REGULARIZERS`` (registry.py) lists them by name with what each one needs from the model's capture.
"""
from .attention_priors import (
    DistanceAttentionLoss,
    PatchSimilarityLoss,
    distance_attention_loss,
    manhattan_penalty,
    patch_gram_distances,
    patch_similarity_loss,
)
from .drloc import DRLocLoss, drloc_loss
from .nonspatial_entropy import NonSpatialEntropyLoss, nonspatial_entropy
from .registry import CAPTURE_INPUTS, REGULARIZERS, RegularizerInfo
from .spatial_entropy import SpatialEntropyLoss, check_maps, spatial_entropy
from .total_variation import TotalVariationLoss, total_variation

__all__ = [
    "spatial_entropy",
    "SpatialEntropyLoss",
    "check_maps",
    "total_variation",
    "TotalVariationLoss",
    "nonspatial_entropy",
    "NonSpatialEntropyLoss",
    "drloc_loss",
    "DRLocLoss",
    "manhattan_penalty",
    "distance_attention_loss",
    "DistanceAttentionLoss",
    "patch_gram_distances",
    "patch_similarity_loss",
    "PatchSimilarityLoss",
    "RegularizerInfo",
    "REGULARIZERS",
    "CAPTURE_INPUTS",
]
