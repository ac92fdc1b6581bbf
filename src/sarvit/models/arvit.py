"""ARViT: the Attention Regulated Vision Transformer of the ARViT thesis (§3.4, Fig. 2).

A reduced ViT-Base, read top to bottom as the thesis describes it:

1. patch embedding: a convolution with kernel = stride = patch size (timm's ``PatchEmbed``);
2. a fixed 2D sinusoidal position embedding added to every patch embedding (a buffer, never trained);
3. six encoder blocks of width 516 (ViT-Base: twelve of width 768), each timm's ``Attention`` followed by a
   single fully connected layer where ViT has its two-layer MLP;
4. no [CLS] token: the head reads the complete output of the last block.

``timm.create_model("arvit_base", num_classes=10, img_size=32, patch_size=4)`` builds it once sarvit is
imported; ``sarvit.create_model("arvit_base", sar=False, ...)`` builds it with its capture hooks installed.
Its forward takes ``capture=Capture(attention_blocks=..., tokens=...)`` as the ViTs' does; having no [CLS]
token, it has no [CLS] maps to give (``maps`` / ``cls_attention`` raise :class:`~sarvit.SarvitError`).
"""
from __future__ import annotations

from typing import Optional

import torch
from timm.layers import Attention, DropPath, PatchEmbed, build_sincos2d_pos_embed, get_act_layer, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..checks import check_choice
from ..errors import SarvitError
from .capture import Capture, capturing, patch_grid

__all__ = ["ARViT", "ARViTBlock", "GLOBAL_POOLS"]

# How the head reads the last block's [B, N, D] tokens: "flatten" concatenates all N tokens (N*D features,
# one weight per token and channel, tied to the grid size); "avg" averages them (D features, any grid).
GLOBAL_POOLS = ("flatten", "avg")


class ARViTBlock(nn.Module):
    """One encoder block: timm's multi-head self-attention, then ONE fully connected layer (thesis §3.4).

    ``post_norm=False`` (default) normalises before each sub-layer as ViT does: ``x + f(norm(x))``;
    ``post_norm=True`` normalises after each residual sum as the original Transformer does: ``norm(x + f(x))``.
    Input and output: tokens ``[B, N, D]``.
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, act_layer: str = "gelu",
                 post_norm: bool = False, proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), get_act_layer(act_layer)(), nn.Dropout(proj_drop))
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = self.norm1(x + self.drop_path1(self.attn(x)))
            return self.norm2(x + self.drop_path2(self.mlp(x)))
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class ARViT(nn.Module):
    """ARViT (thesis §3.4): conv patch embedding + fixed 2D sin-cos positions, 6 blocks of width 516 with a
    one-layer feed-forward, no [CLS] token, a head over every token of the last block.

    Choices where the thesis is silent (each a constructor argument):

    * ``num_heads=12``: the thesis derives ARViT from ViT-Base by changing depth, width, MLP and [CLS] and
      names no change to ViT-Base's 12 heads; 516 = 12 * 43, so the head width is 43.
    * ``global_pool="flatten"``: "the complete output of the last encoder block" is read literally, one
      linear layer over all N*516 token features (after the final LayerNorm); ``"avg"`` averages the tokens.
    * ``post_norm=False``: pre-norm blocks as in ViT, whose reduction ARViT is; ``True`` for the original
      Transformer's post-norm.
    * ``act_layer="gelu"``: ViT's MLP activation, applied after the single fully connected layer.
    * sin-cos layout: timm's ``build_sincos2d_pos_embed`` with temperature 10000, channels
      ``[sin(y w), sin(x w), cos(y w), cos(x w)]``, ``w_i = 10000^(-i / (D/4))``, ``i < D/4`` (D % 4 == 0).

    timm conventions: ``blocks`` (each with ``.attn``, timm's ``Attention``), ``norm``, ``patch_embed``,
    ``num_prefix_tokens = 0``, ``forward_features(x) -> [B, N, D]``, ``forward_head``, ``reset_classifier``.

    Example:
        >>> model = ARViT(img_size=32, patch_size=4, num_classes=10)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    num_prefix_tokens = 0

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 516, depth: int = 6, num_heads: int = 12, global_pool: str = "flatten",
                 qkv_bias: bool = True, act_layer: str = "gelu", post_norm: bool = False, drop_rate: float = 0.0,
                 proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        if embed_dim % num_heads or embed_dim % 4:
            raise SarvitError(f"ARViT needs embed_dim divisible by num_heads and by 4 (2D sin-cos position "
                              f"embedding), got embed_dim={embed_dim}, num_heads={num_heads}")
        self.num_classes, self.global_pool = num_classes, _checked_pool(global_pool)
        self.post_norm, self.act_layer = post_norm, act_layer  # kept for ModelSpec.of: shapes do not show them
        self.num_features = self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        positions = build_sincos2d_pos_embed(list(self.patch_embed.grid_size), dim=embed_dim, temperature=10000.0)
        self.register_buffer("pos_embed", positions.unsqueeze(0), persistent=False)  # fixed: rebuilt, never saved
        # stochastic depth grows linearly with depth (plain floats: the model can also be built on the meta device)
        drop_paths = [drop_path_rate * index / max(depth - 1, 1) for index in range(depth)]
        self.blocks = nn.ModuleList(
            ARViTBlock(embed_dim, num_heads, qkv_bias=qkv_bias, act_layer=act_layer, post_norm=post_norm,
                       proj_drop=proj_drop_rate, attn_drop=attn_drop_rate, drop_path=rate)
            for rate in drop_paths
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._new_head(num_classes)
        self.apply(_init_weights)

    def _new_head(self, num_classes: int) -> nn.Module:
        self.head_hidden_size = self.embed_dim * (self.patch_embed.num_patches if self.global_pool == "flatten" else 1)
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> last block's tokens after the final norm ``[B, N, D]``."""
        x = self.patch_embed(x) + self.pos_embed.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``[B, N, D]`` -> logits ``[B, num_classes]`` (or the pooled features if ``pre_logits``)."""
        x = x.flatten(1) if self.global_pool == "flatten" else x.mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor, capture: Optional[Capture] = None, return_maps: bool = False,
                return_attention: bool = False):
        """Images ``[B, C, H, W]`` -> logits ``[B, num_classes]``; with ``capture`` -> ``(logits, captured)``.

        ``captured`` holds what ``capture`` asked for: ``attention`` ``{block: A [B, H, N, N]}`` (no prefix
        tokens: N is the patch count) and ``tokens`` ``[B, D, k, k]``. ``maps``, ``cls_attention`` and the ViTs'
        ``return_maps`` / ``return_attention`` need a [CLS] query, which ARViT does not have: SarvitError.
        """
        if return_maps or return_attention:
            raise SarvitError("return_maps/return_attention need a [CLS] query; ARViT has no class token "
                              "(capture attention_blocks or tokens instead)")
        if capture is None:
            return self.forward_head(self.forward_features(x))
        with capturing(self, capture, patch_grid(self, x)) as captured:
            logits = self.forward_head(self.forward_features(x))
        return logits, captured

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            self.global_pool = _checked_pool(global_pool)
        self.num_classes = num_classes
        self.head = self._new_head(num_classes).to(self.norm.weight.device)
        self.head.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()  # the position embedding is a buffer; norms and biases are skipped by timm's factory

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups by depth, for timm's layer-wise learning-rate decay."""
        return {"stem": r"^patch_embed", "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]}


def _checked_pool(global_pool: str) -> str:
    return check_choice(global_pool, "global_pool", GLOBAL_POOLS)


def _init_weights(module: nn.Module) -> None:
    """ViT's initialisation: truncated normal (std 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


default_cfgs = generate_default_cfgs({
    "arvit_base": {"num_classes": 1000, "input_size": (3, 224, 224), "first_conv": "patch_embed.proj",
                   "classifier": "head", "license": "apache-2.0"},
})


@register_model
def arvit_base(pretrained: bool = False, **kwargs) -> ARViT:
    """ARViT-Base (thesis §3.4): 6 blocks, width 516, 12 heads, patch 16. No pretrained weights exist."""
    if pretrained:
        raise SarvitError("arvit_base has no pretrained weights: expected pretrained=False, got pretrained=True; "
                          "train it from scratch (the thesis pre-trains it on rotation prediction)")
    return build_model_with_cfg(ARViT, "arvit_base", pretrained=False, **kwargs)
