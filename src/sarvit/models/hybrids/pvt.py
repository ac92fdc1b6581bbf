"""PVT-Small, the first Pyramid Vision Transformer (Wang et al., ICCV 2021): a timm ViT whose patch embedding is
PVT's first three stages.

PVT (the paper's Sec. 3, Fig. 3, Tab. 1) has four stages; each starts with a patch embedding (a stride-P conv, then
LayerNorm: P = 4, 2, 2, 2), adds its own learned position embedding and runs pre-norm transformer blocks whose
attention is *spatial-reduction attention* (SRA, Eq. 2-3): the keys and values come from the tokens reduced by a
stride-R conv and a LayerNorm, R = 8, 4, 2, 1. The [CLS] token joins at the last stage, whose head reads it.

The last stage has R = 1, so it is exactly a ViT over the 7x7 grid (at 224 px, overall stride 32) with a [CLS]
token: it is built as timm's ``VisionTransformer`` (3 blocks, width 512, 8 heads, MLP ratio 4), and the first
three stages with the stage-4 patch embedding are its ``patch_embed`` (:class:`PVTStem`). So SAR's surgery, capture
and every ``--reg`` term apply to the last stage as to a ViT: S is ``[B, 8, 7, 7]``, the [CLS] query against the
keys of the full (unreduced: R = 1) 7x7 grid. The reduced key grids of stages 1-3 are not read by SAR.

Sizes (PVT-Small, Tab. 1): widths 64, 128, 320, 512; heads 1, 2, 5, 8; depths 3, 4, 6, 3; MLP ratios 8, 8, 4,
4; 24.5 M parameters. The SRA of stages 1-3 is timm's ``pvt_v2.Attention`` (PVT-v2's linear-free SRA, the same
layer as v1's). Differences from the authors' code: stochastic depth (``drop_path_rate``) acts on the last stage's
blocks only, and the [CLS] token and q/k/v of the last stage are timm's (one ``qkv`` linear, not ``q`` + ``kv``).
"""
from __future__ import annotations

from functools import partial

import torch
from timm.layers import Mlp, PatchEmbed, to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.pvt_v2 import Attention as SpatialReductionAttention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ...errors import SarvitError

__all__ = ["PVTBlock", "PVTStem", "pvt_small"]


class PVTBlock(nn.Module):
    """A pre-norm block with spatial-reduction attention; ``forward(x [B, h * w, C], (h, w)) -> [B, h * w, C]``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SpatialReductionAttention(dim, num_heads=num_heads, sr_ratio=sr_ratio, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class PVTStage(nn.Module):
    """Patch embedding (stride ``patch``), position embedding, blocks: ``[B, C_in, H, W] -> [B, C, H/P, W/P]``."""

    def __init__(self, img_size: tuple[int, int], patch: int, in_chans: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, sr_ratio: int) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch, in_chans, dim, norm_layer=partial(nn.LayerNorm, eps=1e-5))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, dim))
        trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(PVTBlock(dim, num_heads, mlp_ratio, sr_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.patch_embed.grid_size
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x, grid)
        return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


class PVTStem(nn.Module):
    """PVT's stages 1-3 and the stage-4 patch embedding, in timm's patch-embedding place: images
    ``[B, 3, H, W]`` -> stage-4 tokens ``[B, (H/32) * (W/32), embed_dim]``; ``grid_size`` is the stage-4 grid."""

    def __init__(self, img_size=224, patch_size=32, in_chans: int = 3, embed_dim: int = 512,
                 dims=(64, 128, 320), depths=(3, 4, 6), heads=(1, 2, 5), mlp_ratios=(8, 8, 4), sr_ratios=(8, 4, 2),
                 **_patch_embed_options) -> None:  # bias / dynamic_img_pad: options of timm's PatchEmbed only
        super().__init__()
        if to_2tuple(patch_size) != (32, 32):
            raise SarvitError(f"patch_size: PVT's four stages have an overall stride of 32, got {patch_size!r}")
        self.img_size, self.patch_size = to_2tuple(img_size), (32, 32)
        if any(side % 32 for side in self.img_size):
            raise SarvitError(f"img_size: PVT needs a multiple of 32 (its overall stride), got {img_size!r}")
        size, widths, stages = self.img_size, (in_chans, *dims), []
        for index, patch in enumerate((4, 2, 2)):
            stages.append(PVTStage(size, patch, widths[index], dims[index], depths[index], heads[index],
                                   mlp_ratios[index], sr_ratios[index]))
            size = tuple(side // patch for side in size)
        self.stages = nn.ModuleList(stages)
        self.proj = PatchEmbed(size, 2, dims[-1], embed_dim, norm_layer=partial(nn.LayerNorm, eps=1e-5))
        self.grid_size = self.proj.grid_size
        self.num_patches = self.proj.num_patches

    def feat_ratio(self, as_scalar: bool = True):
        return 32 if as_scalar else (32, 32)

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        return tuple(side // 32 for side in img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.proj(x)


default_cfgs = generate_default_cfgs({
    "pvt_small": {"num_classes": 1000, "input_size": (3, 224, 224), "first_conv": "patch_embed.stages.0.patch_embed.proj",
                  "classifier": "head", "license": "apache-2.0"},
})


@register_model
def pvt_small(pretrained: bool = False, stage_dims=None, stage_depths=(3, 4, 6), stage_heads=None,
              **kwargs) -> VisionTransformer:
    """PVT-Small (24.5 M parameters): stages 1-3 (``stage_dims`` / ``stage_depths`` / ``stage_heads``) in the
    stem, stage 4 as the ViT (``embed_dim`` 512, ``depth`` 3, ``num_heads`` 8). No pretrained weights are shipped.

    ``stage_dims`` default to PVT-Small's ratios of the last width (1/8, 1/4, 5/8 of ``embed_dim``: 64, 128, 320)
    and ``stage_heads`` to one head per 64 channels (1, 2, 5), so that ``embed_dim`` alone scales the model.
    """
    if pretrained:
        raise SarvitError("pvt_small has no pretrained weights: expected pretrained=False, got pretrained=True")
    width = kwargs.get("embed_dim", 512)
    dims = tuple(stage_dims or (width // 8, width // 4, width * 5 // 8))
    heads = tuple(stage_heads or (max(1, dim // 64) for dim in dims))
    if any(dim < 1 or dim % head for dim, head in zip(dims, heads)):
        raise SarvitError(f"stage_dims {dims} must be >= 1 and divisible by stage_heads {heads}")
    stem = partial(PVTStem, dims=dims, depths=tuple(stage_depths), heads=heads)
    options = dict(patch_size=32, embed_dim=512, depth=3, num_heads=8, mlp_ratio=4.0, qkv_bias=True,
                   embed_layer=stem)
    return build_model_with_cfg(VisionTransformer, "pvt_small", pretrained=False, **{**options, **kwargs})
