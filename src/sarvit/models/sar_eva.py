"""SAR's last-block surgery for timm's ``Eva`` (rotary ViTs, ``vit_*_patch16_rope_*``): :class:`EvaSARBlock`.

The same switches as :class:`sarvit.models.SARBlock`, on an ``EvaBlock``: its submodules keep their timm names
(``norm1``, ``attn``, ``gamma_1``, ``drop_path1``, ``norm2``, ``mlp``, ``gamma_2``, ``drop_path2``) and its
``attn`` (``AttentionRope`` or ``EvaAttention``) runs its own forward with the block's ``rope``.
"""
from __future__ import annotations

import torch
from timm.models.eva import EvaBlock
from torch import nn

__all__ = ["EvaSARBlock"]


class EvaSARBlock(nn.Module):
    """An ``EvaBlock`` with switchable skip / LayerNorm removal; ``forward(x [B, N, C], rope) -> [B, N, C]``.

    ``config`` is a :class:`sarvit.models.SARConfig`. With every switch off it computes ``EvaBlock`` exactly.
    """

    def __init__(self, block: EvaBlock, config) -> None:
        super().__init__()
        self.norm1, self.attn, self.gamma_1, self.drop_path1 = block.norm1, block.attn, block.gamma_1, block.drop_path1
        self.norm2 = nn.Identity() if config.remove_last_norm else block.norm2
        self.mlp, self.gamma_2, self.drop_path2 = block.mlp, block.gamma_2, block.drop_path2
        self.config = config

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        attended = self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask, is_causal=is_causal)
        if self.gamma_1 is not None:
            attended = self.gamma_1 * attended
        # As in SARBlock: a branch without its skip is the whole signal, so stochastic depth leaves it.
        x = attended if self.config.remove_last_skip else x + self.drop_path1(attended)
        mlp_out = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            mlp_out = self.gamma_2 * mlp_out
        return mlp_out if self.config.remove_last_mlp_skip else x + self.drop_path2(mlp_out)
