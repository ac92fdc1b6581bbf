"""Tensor algorithms with no learning in them."""
from .connected_components import connected_components, hooking_rounds
from .triton_spatial_entropy import fused_spatial_entropy

__all__ = ["connected_components", "hooking_rounds", "fused_spatial_entropy"]
