"""Tensor algorithms with no learning in them."""
from .connected_components import connected_components, hooking_rounds

__all__ = ["connected_components", "hooking_rounds"]
