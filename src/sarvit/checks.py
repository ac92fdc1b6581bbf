"""Door checks for the library's functions: shape, dtype, choice and range, one vocabulary for every room.

Each check raises :class:`~sarvit.errors.SarvitError` (a ``ValueError``) or, for a wrong type,
:class:`~sarvit.errors.SarvitTypeError` (also a ``TypeError``), with a one-line message that names the Python
argument, what was expected and what was found.

Example:
    >>> check_choice(4, "connectivity", (8, 4))
    4
    >>> check_choice(8.0, "connectivity", (8, 4))
    Traceback (most recent call last):
        ...
    sarvit.errors.SarvitError: connectivity must be one of 8, 4, got 8.0
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .errors import SarvitError, SarvitTypeError

__all__ = ["check_choice", "check_grid", "check_maps", "check_model", "check_number", "check_tensor"]


def check_tensor(x: Any, name: str, layout: str | None = None, *, dtype: str | torch.dtype | None = None,
                 nonempty: bool = False, data: bool = False) -> torch.Tensor:
    """``x`` must be a tensor; returns it.

    Args:
        layout: the expected dims, as ``"B, H, h, w"`` (exactly 4 dims) or ``"..., h, w"`` (at least 2).
        dtype: ``"float"`` (any floating-point dtype), ``"bool"``, or one ``torch.dtype``.
        nonempty: refuse a tensor with no element.
        data: the function reads the values (a meta tensor has none).
    """
    shape = f" of shape [{layout}]" if layout else ""
    if not isinstance(x, torch.Tensor):
        raise SarvitTypeError(f"{name} must be a torch.Tensor{shape}, got {type(x).__name__}")
    if layout is not None:
        named = [dim for dim in layout.split(", ") if dim != "..."]
        at_least = len(named) != len(layout.split(", "))
        if x.dim() < len(named) or (not at_least and x.dim() != len(named)):
            raise SarvitError(f"{name} must have shape [{layout}] ({'at least ' if at_least else ''}{len(named)} "
                              f"dims), got shape {tuple(x.shape)}")
    if dtype == "float" and not x.is_floating_point():
        raise SarvitTypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if dtype == "bool" and x.dtype != torch.bool:
        raise SarvitTypeError(f"{name} must be a bool tensor, got dtype {x.dtype}")
    if isinstance(dtype, torch.dtype) and x.dtype != dtype:
        raise SarvitTypeError(f"{name} must have dtype {dtype}, got {x.dtype}")
    if nonempty and x.numel() == 0:
        raise SarvitError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if data and x.is_meta:
        raise SarvitError(f"{name} is on the meta device (shapes only, no values); pass a tensor holding data")
    return x


def check_maps(maps: Any, name: str = "S", *, data: bool = False) -> torch.Tensor:
    """Maps over the patch grid: a floating-point ``[B, H, h, w]`` tensor with ``h, w >= 1``; returns it."""
    check_tensor(maps, name, "B, H, h, w", dtype="float", data=data)
    if maps.shape[-1] < 1 or maps.shape[-2] < 1:
        raise SarvitError(f"{name} maps must be at least 1x1, got shape {tuple(maps.shape)}")
    return maps


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` must be one of ``choices``, of the same type (``8.0`` is not the choice ``8``); returns it."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise SarvitError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> Any:
    """``value`` must be a finite real (an ``int`` when ``integer``) within ``[low, high]`` (an end is excluded
    when ``low_open`` / ``high_open``); returns it."""
    kind = "an integer" if integer else "a number"
    allowed = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise SarvitTypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        left = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        right = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise SarvitError(f"{name} must be {kind} {' and '.join(filter(None, (left, right))) or 'that is finite'}"
                          f", got {value!r}")
    return value


def check_grid(value: Any, name: str = "grid_size") -> tuple[int, int]:
    """A patch grid ``(h, w)``: two integers >= 1; returns it as a tuple."""
    if not isinstance(value, (tuple, list, torch.Size)) or len(value) != 2:
        raise SarvitError(f"{name} must be a patch grid (h, w), got {value!r}")
    for side in value:
        check_number(side, name, low=1, integer=True)
    return tuple(value)


def check_model(model: Any, name: str = "model") -> torch.nn.Module:
    """A timm-style ViT: an ``nn.Module`` with ``blocks`` (timm's ``VisionTransformer``, ARViT); returns it."""
    if not isinstance(model, torch.nn.Module) or not isinstance(getattr(model, "blocks", None), torch.nn.Module):
        raise SarvitTypeError(f"{name} must be a timm-style ViT (an nn.Module with blocks), got {type(model).__name__}")
    return model
