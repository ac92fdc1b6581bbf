"""Loading timm or sarvit weights into a model built by :func:`sarvit.create_model`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from ..errors import SarvitError, SarvitTypeError
from .pyramids import PYRAMIDS, capture_blocks

__all__ = ["LoadReport", "load_weights"]


@dataclass
class LoadReport:
    """What :func:`load_weights` did with the keys it was given."""

    removed_by_surgery: list[str] = field(default_factory=list)
    head_dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = []
        if self.removed_by_surgery:
            parts.append(f"ignored (removed by the SAR surgery): {', '.join(self.removed_by_surgery)}")
        if self.head_dropped:
            parts.append(f"classifier head not loaded (new class count): {', '.join(self.head_dropped)}")
        if self.missing:
            parts.append(f"kept at initialisation: {', '.join(self.missing)}")
        return "; ".join(parts) or "all keys loaded"


def _listed(items: list[str], separator: str = ", ", limit: int = 20) -> str:
    """The first ``limit`` items, and how many more there are: errors stay readable for wide models."""
    more = f"{separator}... ({len(items) - limit} more)" if len(items) > limit else ""
    return separator.join(items[:limit]) + more


def _head_keys(model: nn.Module) -> set[str]:
    prefixes = ["head."]
    if getattr(model, "head_dist", None) is not None:
        prefixes.append("head_dist.")
    return {key for key in model.state_dict() if any(key.startswith(p) for p in prefixes)}


def _depth(keys) -> int:
    """The number of blocks that ``blocks.<i>.`` keys name."""
    indices = [int(key.split(".")[1]) for key in keys if key.startswith("blocks.") and key.split(".")[1].isdigit()]
    return max(indices) + 1 if indices else 0


def _width(state: dict) -> int | None:
    for key in ("cls_token", "pos_embed", "norm.weight"):
        if key in state:
            return int(state[key].shape[-1])
    return None


def _architecture_hint(model: nn.Module, state_dict: dict) -> str:
    """What differs at the scale of the whole model: depth or width, with the switch that builds the other."""
    own = model.state_dict()
    theirs_depth, own_depth = _depth(state_dict), len(getattr(model, "blocks", ()))  # 0 and 0 for a pyramid
    if theirs_depth and theirs_depth != own_depth:
        return (f" (the checkpoint has {theirs_depth} blocks, the model {own_depth}: build the model with "
                f"depth={theirs_depth}, or as the model the weights were trained as)")
    theirs_width, own_width = _width(state_dict), _width(own)
    if theirs_width and own_width and theirs_width != own_width:
        return (f" (the checkpoint is {theirs_width} wide, the model {own_width}: build the model with "
                f"embed_dim={theirs_width}, or as the model the weights were trained as)")
    return ""


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], *, new_head: bool = False,
                 new_last_norm: bool = False) -> LoadReport:
    """Load ``state_dict`` (a timm or sarvit checkpoint's model weights) into ``model``.

    Keys of the LayerNorm that the SAR surgery removed (``blocks.<last>.norm2.*``) are reported
    and ignored, so a plain timm checkpoint loads into a SAR model. With ``new_head=True`` the
    classifier head is left at its initialisation when its shape differs (fine-tuning on a new
    class count) or absent (a backbone without one, as `sarvit pretrain` writes). Weights trained with the surgery lack that LayerNorm: loading them into a model that keeps
    it is an error naming the switch, unless ``new_last_norm=True`` leaves it at its initialisation.
    Any other difference is an error naming the keys (and the depth or width that differs).
    """
    if not isinstance(model, PYRAMIDS) and (
            not isinstance(model, nn.Module) or not isinstance(getattr(model, "blocks", None), nn.Module)):
        raise SarvitTypeError(f"model must be a ViT built by sarvit.create_model, got {type(model).__name__}")
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state_dict.items()):
        found = type(state_dict).__name__ if not isinstance(state_dict, Mapping) else "a mapping with other entries"
        raise SarvitTypeError(f"state_dict must map parameter names to tensors (a model's state_dict()), got {found}")
    own = model.state_dict()
    last_block = capture_blocks(model)[-1]  # a pyramid's is its last stage's (stages.3.blocks.1, layers.3.blocks.1)
    last_norm = next(name for name, module in model.named_modules() if module is last_block) + ".norm2."
    report = LoadReport()
    head = _head_keys(model)
    to_load: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in state_dict.items():
        if key not in own:
            if key.startswith(last_norm):
                report.removed_by_surgery.append(key)
            else:
                unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            if new_head and key in head:
                report.head_dropped.append(key)
            else:
                mismatched.append(f"{key} (checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)})")
        else:
            to_load[key] = value
    missing = [key for key in own if key not in state_dict]
    absent_ok = [key for key in missing if key.startswith(last_norm)]
    fresh_head = [key for key in missing if new_head and key in head]  # a headless backbone: the head starts anew
    missing = [key for key in missing if key not in absent_ok and key not in fresh_head]
    architecture = _architecture_hint(model, state_dict)
    if absent_ok and not new_last_norm and not architecture:
        raise SarvitError(
            f"state_dict: the weights were trained with SAR's last-LayerNorm removal (they have no {last_norm}*), but "
            "this model keeps that LayerNorm and would use it freshly initialised: build the model with "
            "remove_last_norm=True (as they were trained), or pass new_last_norm=True to start that LayerNorm afresh")
    problems = []
    if mismatched:
        head_only = all(entry.split(" ")[0] in head for entry in mismatched)
        hint = architecture or (" (a different class count; to fine-tune, pass new_head=True)" if head_only else "")
        problems.append(f"shape mismatch{hint}: {_listed(mismatched, '; ')}")
    elif architecture:
        problems.append(f"a different architecture{architecture}")
    if unexpected:
        problems.append(f"keys the model does not have: {_listed(unexpected)}")
    if missing:
        problems.append(f"keys the checkpoint lacks: {_listed(missing)}")
    if problems:
        raise SarvitError(f"state_dict does not fit {type(model).__name__}: " + " | ".join(problems))
    model.load_state_dict(to_load, strict=False)
    report.missing = absent_ok + fresh_head
    return report
