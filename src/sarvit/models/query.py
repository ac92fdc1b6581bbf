"""Which query S is read from, and the keys it meets: the [CLS] query, or one for a model without [CLS].

S is ``<q, k_(y,x)> * scale`` for one query ``q`` per image and head against the last block's patch keys.
``query`` chooses ``q``:

* ``"cls"`` - the [CLS] token's query (the papers' S, Eq. 4). Needs a [CLS] token at position 0.
* ``"mean"`` - the average of the patch queries, ``mean_p q_p``.
* ``"pooled"`` - the query of the average-pooled patch embedding: ``q(mean_p z_p)`` with ``z`` the last block's
  input tokens, put through the block's own ``norm1``, query projection and ``q_norm``. This is what the journal's
  wording suggests ("the [CLS] token ... can potentially be replaced by a vector obtained by average-pooling all
  the patch embeddings", Sec. 5.5): the pooled vector takes the [CLS] token's place, then its query is computed.

The two differ only through what is not linear in the tokens: ``norm1`` (LayerNorm of a mean is not the mean of
LayerNorms), ``q_norm``, and rotary embeddings (``mean`` averages queries each rotated to its own position;
the ``pooled`` vector has no position, so its query is not rotated, as Eva leaves [CLS] unrotated).

Rotary (RoPE) ViTs, timm's ``Eva`` (``vit_*_patch16_rope_*``): its ``AttentionRope`` (or ``EvaAttention``)
rotates q and k after
``q_norm`` / ``k_norm`` inside its forward. The capture keeps the ``rope`` tensor the block passed to its
``attn`` (a forward pre-hook) and rotates the kept keys (and, for ``mean``, queries) with timm's own
``apply_rot_embed_cat``, exactly as the attention did, so S is the similarity the attention softmaxed.
"""
from __future__ import annotations

import torch
from timm.layers import Attention, AttentionRope, apply_rot_embed_cat
from timm.models.eva import EvaAttention
from torch import nn

from ..errors import SarvitError
from .hybrids.cvt import ConvAttention


__all__ = ["ATTENTIONS", "QUERIES", "key_grid", "query_and_keys", "rotated_qk"]

QUERIES = ("cls", "mean", "pooled")
ROTARY = (AttentionRope, EvaAttention)  # rotate q and k after q_norm / k_norm, prefix tokens left as they are
ATTENTIONS = (Attention, *ROTARY, ConvAttention)  # attention modules whose q_norm / k_norm see the per-head q and k


class KeepRope:
    """Forward pre-hook on a rotary attention: keeps the ``rope`` tensor it is called with while wanted."""

    def __init__(self, recorder, key) -> None:
        self.recorder, self.key = recorder, key

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.key in self.recorder.wanted:
            self.recorder.kept[self.key] = kwargs.get("rope", args[1] if len(args) > 1 else None)


class KeepInput:
    """Forward pre-hook on a block's ``norm1``: keeps the block's input tokens ``[B, T, C]`` while wanted."""

    def __init__(self, recorder, key) -> None:
        self.recorder, self.key = recorder, key

    def __call__(self, module: nn.Module, args: tuple) -> None:
        if self.key in self.recorder.wanted:
            self.recorder.kept[self.key] = args[0]


def install_hooks(recorder, index: int, block: nn.Module) -> None:
    """The hooks block ``index`` needs beyond q and k: its input (for ``pooled``) and, for Eva, its rope."""
    if isinstance(getattr(block, "norm1", None), nn.Module):
        block.norm1.register_forward_pre_hook(KeepInput(recorder, (index, "input")))
    if isinstance(block.attn, ROTARY):
        block.attn.register_forward_pre_hook(KeepRope(recorder, (index, "rope")), with_kwargs=True)


def hook_keys(block: nn.Module, index: int, query: str | None) -> tuple:
    """The kept values :func:`query_and_keys` (or, with ``query=None``, :func:`rotated_qk`) reads for block
    ``index`` besides its q and k."""
    if query == "pooled" and isinstance(block.attn, ConvAttention):
        raise SarvitError("query: 'pooled' needs a linear query projection; a convolutional projection (CvT) has "
                          "no query for a pooled vector, use 'cls' or 'mean'")
    keys = ((index, "input"),) if query == "pooled" else ()
    return keys + (((index, "rope"),) if isinstance(block.attn, ROTARY) else ())


def key_grid(block: nn.Module, grid: tuple[int, int]) -> tuple[int, int]:
    """The grid S is laid out on: the patch grid, or the squeezed key grid of a CvT block (keys at stride 2)."""
    return tuple(block.attn.key_grid) if isinstance(block.attn, ConvAttention) else tuple(grid)


def _rotate(attn: nn.Module, x: torch.Tensor, rope: torch.Tensor | None, prefix: int) -> torch.Tensor:
    """``x [B, H, T, D]`` rotated as ``EvaAttention.forward`` rotates its q and k (prefix tokens untouched)."""
    if rope is None or not isinstance(attn, ROTARY):
        return x
    half = getattr(attn, "rotate_half", False)
    return torch.cat([x[:, :, :prefix], apply_rot_embed_cat(x[:, :, prefix:], rope.float(), half=half)], dim=2)


def _project_query(attn: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The per-head query ``[B, H, T, D]`` of normed tokens ``h [B, T, C]``, through ``attn``'s own weights."""
    width = attn.proj.in_features  # heads * head_dim
    if getattr(attn, "qkv", None) is not None:
        q = nn.functional.linear(h, attn.qkv.weight[:width],
                                 None if attn.qkv.bias is None else attn.qkv.bias[:width])
        if getattr(attn, "q_bias", None) is not None:  # Eva keeps its q bias apart from qkv
            q = q + attn.q_bias
    else:
        q = attn.q_proj(h)
    return attn.q_norm(q.reshape(*h.shape[:2], attn.num_heads, -1).transpose(1, 2))


def rotated_qk(block: nn.Module, kept: dict, index: int, prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block ``index``'s per-head q and k ``[B, H, T, D]`` float32 as its attention multiplied them (after
    q/k norm and, for Eva, the rotary embedding), from what its hooks kept."""
    rope = kept.get((index, "rope"))
    q, k = (_rotate(block.attn, kept[index, part].float(), rope, prefix) for part in ("q", "k"))
    groups = getattr(block.attn, "num_kv_groups", 1)  # grouped-query attention: head h reads kv head h // groups
    return q, (k.repeat_interleave(groups, dim=1) if groups > 1 else k)


def query_and_keys(block: nn.Module, kept: dict, index: int, query: str, prefix: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The query ``[B, H, D]`` and the keys ``[B, H, T, D]`` (all T tokens, as attended) of block ``index``,
    float32, from what its hooks kept (``(index, "q")``, ``(index, "k")`` and :func:`hook_keys`)."""
    q, k = rotated_qk(block, kept, index, prefix)
    if query == "cls":
        return q[:, :, 0], k
    if query == "mean":
        return q[:, :, prefix:].mean(dim=2), k
    tokens = kept[index, "input"][:, prefix:].float()
    pooled = block.norm1(tokens.mean(dim=1, keepdim=True))
    return _project_query(block.attn, pooled)[:, :, 0].float(), k
