"""What one forward pass hands back besides the logits: [CLS] maps, chosen blocks' attention, final tokens.

Every block's ``attn`` stays timm's own ``Attention`` running its own ``forward`` (fused or not, as its
``fused_attn`` says). q and k are read with forward hooks on ``attn.q_norm`` and ``attn.k_norm``: timm's
``Attention.forward`` calls them on the per-head q and k right before attending
(``q, k = self.q_norm(q), self.k_norm(k)``, the same line in timm 1.0.29 and 1.0.31); without q/k norm they
are ``nn.Identity`` and their hooks still fire. The final tokens come from a hook on ``model.norm``. Hooks
exist only while a forward that asks for something runs, so a plain forward computes nothing extra.

Any model whose ``blocks[i].attn`` is timm's ``Attention`` and whose ``patch_embed`` / ``norm`` /
``num_prefix_tokens`` follow timm's ``VisionTransformer`` can capture by wrapping its forward:

    >>> with capturing(model, Capture(tokens=True), patch_grid(model, x)) as captured:
    ...     logits = model.forward_head(model.forward_features(x))
    >>> captured["tokens"].shape  # [B, C, k, k]
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

from ..errors import SarvitError

__all__ = ["Capture", "capturing", "patch_grid"]


@dataclass(frozen=True)
class Capture:
    """What to capture from one forward pass; every field defaults to off.

    ``maps``: the last block's S ``[B, H, k, k]`` float32, ``<q_cls, k_patch> * scale`` after q/k norm.
    ``cls_attention``: the last block's post-softmax [CLS] attention over patches ``[B, H, k, k]`` float32.
    ``attention_blocks``: block indices (negative counts from the end) whose full post-softmax attention
    ``[B, H, T, T]`` float32 over all T tokens (prefix tokens first) is captured as ``{index: A}``.
    ``tokens``: the final patch tokens (after the model's final norm, prefix tokens dropped) ``[B, C, k, k]``.
    """

    maps: bool = False
    cls_attention: bool = False
    attention_blocks: tuple[int, ...] = ()
    tokens: bool = False

    def __post_init__(self) -> None:
        blocks = tuple(self.attention_blocks)  # a list is accepted and stored as a tuple
        if any(isinstance(index, bool) or not isinstance(index, int) for index in blocks):
            raise SarvitError(f"Capture.attention_blocks must be block indices (ints), got {self.attention_blocks!r}")
        object.__setattr__(self, "attention_blocks", blocks)

    @property
    def empty(self) -> bool:
        return not (self.maps or self.cls_attention or self.attention_blocks or self.tokens)


def patch_grid(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """The ``(k_h, k_w)`` patch grid a timm-style model makes of ``images [B, C, H, W]``."""
    if getattr(model, "dynamic_img_size", False):
        return tuple(model.patch_embed.dynamic_feat_size(images.shape[-2:]))
    return tuple(model.patch_embed.grid_size)


def _block_indices(model: nn.Module, capture: Capture) -> tuple[int | None, tuple[int, ...]]:
    """The block whose [CLS] row is wanted (or None) and the attention blocks, indices in 0..depth-1."""
    depth = len(model.blocks)
    attention_blocks = []
    for index in capture.attention_blocks:
        if not -depth <= index < depth:
            raise SarvitError(f"Capture.attention_blocks: block {index} is outside 0..{depth - 1} (depth {depth})")
        if index % depth not in attention_blocks:
            attention_blocks.append(index % depth)
    cls_block = None
    if capture.maps or capture.cls_attention:
        if not getattr(model, "has_class_token", getattr(model, "cls_token", None) is not None):
            raise SarvitError(
                f"capturing maps or cls_attention needs a [CLS] query; this {type(model).__name__} has no class token"
            )
        cls_block = depth - 1
    for index in attention_blocks + ([] if cls_block is None else [cls_block]):
        attn = model.blocks[index].attn
        if not isinstance(attn, Attention):
            raise SarvitError(
                f"capture needs timm's Attention in blocks[{index}].attn, found {type(attn).__name__}"
            )
    return cls_block, tuple(attention_blocks)


def _keep(store: dict[str, torch.Tensor], key: str):
    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        store[key] = output

    return hook


def _to_grid(per_patch: torch.Tensor, grid: tuple[int, int], what: str) -> torch.Tensor:
    """``[B, X, N]`` with N patches -> ``[B, X, k_h, k_w]``."""
    if per_patch.shape[-1] != grid[0] * grid[1]:
        raise SarvitError(
            f"capture of {what} expected {grid[0]}x{grid[1]} = {grid[0] * grid[1]} patch tokens, "
            f"found {per_patch.shape[-1]} (patch dropout changes the token count)"
        )
    return per_patch.reshape(*per_patch.shape[:-1], *grid)


@contextmanager
def capturing(
    model: nn.Module, capture: Capture, grid: tuple[int, int], *, similarity: str = "dot"
) -> Iterator[dict]:
    """Hook ``model`` for the one forward pass run inside the ``with``; on leaving, the yielded dict holds
    exactly what ``capture`` asked for (keys ``maps``, ``cls_attention``, ``attention``, ``tokens``).

    Args:
        model: has ``blocks`` whose ``attn`` is timm's ``Attention``, ``num_prefix_tokens`` and, for
            ``tokens``, a final ``norm``; maps and cls_attention need a [CLS] token at position 0.
        capture: what to capture. An empty one registers no hook and yields an empty dict.
        grid: the patch grid ``(k_h, k_w)`` of this forward's images (:func:`patch_grid`).
        similarity: ``"dot"`` for S = ``<q_cls, k> * scale`` (Eq. 4) or ``"cosine"`` (Eq. 15, unit q and k).

    Captured attention and maps are float32 even under autocast; hooks are removed when the ``with`` ends.
    """
    captured: dict = {}
    if capture.empty:
        yield captured
        return
    cls_block, attention_blocks = _block_indices(model, capture)
    qk: dict[int, dict[str, torch.Tensor]] = {index: {} for index in (*attention_blocks, cls_block) if index is not None}
    final: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for index, store in qk.items():
            attn = model.blocks[index].attn
            handles.append(attn.q_norm.register_forward_hook(_keep(store, "q")))
            handles.append(attn.k_norm.register_forward_hook(_keep(store, "k")))
        if capture.tokens:
            handles.append(model.norm.register_forward_hook(_keep(final, "tokens")))
        yield captured
    finally:
        for handle in handles:
            handle.remove()
    if any(len(store) < 2 for store in qk.values()) or (capture.tokens and not final):
        raise SarvitError("capture: the forward pass inside `capturing` did not run the hooked modules")
    prefix = model.num_prefix_tokens
    device_type = next(iter(qk.values()))["q"].device.type if qk else final["tokens"].device.type
    with torch.autocast(device_type, enabled=False):  # the captured maps are float32 whatever the forward ran in
        if cls_block is not None:
            q_cls, k = qk[cls_block]["q"][:, :, 0].float(), qk[cls_block]["k"].float()
            row = torch.einsum("bhd,bhnd->bhn", q_cls, k) * model.blocks[cls_block].attn.scale
            if capture.maps:
                if similarity == "cosine":  # Eq. 15: no scale, unit-norm query and keys
                    maps = torch.einsum("bhd,bhnd->bhn", F.normalize(q_cls, dim=-1), F.normalize(k[:, :, prefix:], dim=-1))
                else:
                    maps = row[:, :, prefix:]
                captured["maps"] = _to_grid(maps, grid, "maps")
            if capture.cls_attention:
                captured["cls_attention"] = _to_grid(row.softmax(dim=-1)[:, :, prefix:], grid, "cls_attention")
        if attention_blocks:
            captured["attention"] = {
                index: (qk[index]["q"].float() @ qk[index]["k"].float().transpose(-2, -1) * model.blocks[index].attn.scale)
                .softmax(dim=-1)
                for index in attention_blocks
            }
    if capture.tokens:
        captured["tokens"] = _to_grid(final["tokens"][:, prefix:].transpose(1, 2), grid, "tokens")
