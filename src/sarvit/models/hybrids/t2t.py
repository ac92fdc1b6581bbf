"""T2T-ViT-14 (Yuan et al., ICCV 2021), the transformer-layer variant ("T2T-ViT_t-14"): a timm ViT whose patch
embedding is the Tokens-to-Token module.

Tokens-to-Token (the paper's Sec. 3.1, Fig. 4): the image is *soft split* into overlapping 7x7 patches (stride 4),
each a token; a T2T transformer layer mixes them; the tokens are put back on their grid ("re-structurization")
and soft split again (3x3, stride 2), twice; a linear layer projects the last split to the backbone width. The
backbone is a plain ViT (14 blocks, width 384, 6 heads, MLP ratio 3) with a [CLS] token, so SAR's surgery,
capture and every ``--reg`` term apply to it exactly as to a ViT: S is read from the last block's [CLS] query
over the final 14x14 token grid (224 px, overall stride 4 * 2 * 2 = 16).

Choices the paper leaves to its code, taken from the authors' code: the T2T layers' attention has one head, an
output width of 64 (``token_dim``), no q/k/v bias, the softmax scale ``1 / sqrt(input width)`` and a skip
connection from its values (the input is wider than the output); the backbone has no q/k/v bias. Where this
differs from the authors' code: the backbone's position embedding is timm's learned one (theirs is a fixed
sinusoid table, 75 k values), so checkpoints are timm-shaped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ...errors import SarvitError

__all__ = ["T2TEmbed", "T2TLayer", "t2t_vit_14"]

# (kernel, stride, padding) of the three soft splits: overall stride 16
SOFT_SPLITS = ((7, 4, 2), (3, 2, 1), (3, 2, 1))


class T2TAttention(nn.Module):
    """Single-head attention from ``dim`` to ``out_dim`` with a skip from its values; ``[B, N, dim] -> [B, N, out_dim]``."""

    def __init__(self, dim: int, out_dim: int, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, out_dim * 3, bias=False)
        self.proj = nn.Linear(out_dim, out_dim)
        self.scale = dim ** -0.5  # the authors' scale: the input width, not the head width
        self.attn_drop = attn_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0,
                                                  scale=self.scale)
        return v + self.proj(attended)  # the input is wider than the output: the skip comes from the values


class T2TLayer(nn.Module):
    """A T2T transformer layer (Eq. 1): ``T' = MLP(MSA(T))``, pre-norm; ``[B, N, dim] -> [B, N, out_dim]``."""

    def __init__(self, dim: int, out_dim: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = T2TAttention(dim, out_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = Mlp(out_dim, hidden_features=out_dim)  # MLP ratio 1
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def soft_split(x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Overlapping patches of ``x [B, C, H, W]`` as tokens ``[B, H' * W', C * kernel^2]``."""
    return F.unfold(x, kernel, padding=padding, stride=stride).transpose(1, 2)


def restructure(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Tokens ``[B, h * w, C]`` back on their grid ``[B, C, h, w]`` (the paper's re-structurization)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def _split_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class T2TEmbed(nn.Module):
    """The Tokens-to-Token module, in timm's patch-embedding place: images ``[B, C, H, W]`` -> tokens
    ``[B, (H/16) * (W/16), embed_dim]``; ``grid_size`` is the final token grid."""

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 384, token_dim: int = 64,
                 **_patch_embed_options) -> None:  # bias / dynamic_img_pad: options of timm's PatchEmbed only
        super().__init__()
        if to_2tuple(patch_size) != (16, 16):
            raise SarvitError(f"patch_size: T2T-ViT's soft splits have an overall stride of 16, got {patch_size!r}")
        self.patch_size = (16, 16)
        self.img_size = to_2tuple(img_size)
        self.grid_size = self.dynamic_feat_size(self.img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        (k0, _, _), (k1, _, _), (k2, _, _) = SOFT_SPLITS
        self.layer1 = T2TLayer(in_chans * k0 * k0, token_dim)
        self.layer2 = T2TLayer(token_dim * k1 * k1, token_dim)
        self.project = nn.Linear(token_dim * k2 * k2, embed_dim)

    def feat_ratio(self, as_scalar: bool = True):
        return 16 if as_scalar else (16, 16)

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        """The token grid after each soft split of an ``img_size`` image: ``(H/16, W/16)`` for multiples of 16."""
        sizes = tuple(img_size)
        for kernel, stride, padding in SOFT_SPLITS:
            sizes = tuple(_split_size(side, kernel, stride, padding) for side in sizes)
        return sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, (kernel, stride, padding) in zip((self.layer1, self.layer2), SOFT_SPLITS):
            tokens = layer(soft_split(x, kernel, stride, padding))
            x = restructure(tokens, tuple(_split_size(side, kernel, stride, padding) for side in x.shape[-2:]))
        return self.project(soft_split(x, *SOFT_SPLITS[-1]))


default_cfgs = generate_default_cfgs({
    "t2t_vit_14": {"num_classes": 1000, "input_size": (3, 224, 224), "first_conv": "patch_embed.layer1.attn.qkv",
                   "classifier": "head", "license": "other"},
})


@register_model
def t2t_vit_14(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """T2T-ViT_t-14: the T2T module (token width 64) and a 14-block ViT (width 384, 6 heads, MLP ratio 3);
    21.5 M parameters (the paper's Tab. 2). No pretrained weights are shipped."""
    if pretrained:
        raise SarvitError("t2t_vit_14 has no pretrained weights: expected pretrained=False, got pretrained=True")
    options = dict(patch_size=16, embed_dim=384, depth=14, num_heads=6, mlp_ratio=3.0, qkv_bias=False,
                   embed_layer=T2TEmbed)
    return build_model_with_cfg(VisionTransformer, "t2t_vit_14", pretrained=False, **{**options, **kwargs})
