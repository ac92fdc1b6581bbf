"""CvT-13 (Wu et al., ICCV 2021): a timm ViT whose patch embedding is CvT's first two stages and whose blocks'
attention uses convolutional projections.

CvT (the paper's Sec. 3, Fig. 2, Tab. 2) has three stages. Each starts with a *convolutional token embedding*: an
overlapping strided conv (7x7/4, then 3x3/2 twice), then LayerNorm. Its blocks are pre-norm transformer blocks whose
q, k and v come from a *convolutional projection*: a depthwise 3x3 conv and BatchNorm on the token map, then a
linear layer. The keys and values use stride 2, so they sit on a grid half as wide ("squeezed"). There are no
position embeddings. The [CLS] token joins at the last stage, bypasses the convs, and is what the head reads.

The last stage is timm's ``VisionTransformer`` (10 blocks, width 384, 6 heads, MLP ratio 4, no position
embedding) with timm's ``Block`` and :class:`ConvAttention` as its ``attn_layer``. Stages 1-2 and the stage-3
embedding are its ``patch_embed`` (:class:`CvTStem`). SAR's surgery, capture and ``--reg`` terms apply as to a ViT.
S is the [CLS] query against the **squeezed key grid** of the last stage: ``[B, 6, 7, 7]`` at 224 px, where the
token grid is 14x14 (``ConvAttention.key_grid``). Queries ``cls`` and ``mean`` apply. ``pooled`` does not: a
convolutional projection of a pooled vector is not defined.

Sizes (CvT-13, Tab. 2): widths 64, 192, 384; heads 1, 3, 6; depths 1, 2, 10; 20 M parameters. As in the
authors' code, attention is scaled by ``1 / sqrt(width)`` (not by the head width) and q/k/v have biases. Stochastic
depth (``drop_path_rate``) acts on the last stage's blocks only.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ...errors import SarvitError

__all__ = ["ConvAttention", "CvTStem", "cvt_13"]


def _conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ConvProjection(nn.Module):
    """A depthwise 3x3 conv (stride 1 for q, 2 for k and v) and BatchNorm: token map ``[B, C, h, w]`` -> tokens
    ``[B, h' * w', C]``."""

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=stride, padding=1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(fmap)).flatten(2).transpose(1, 2)


class ConvAttention(nn.Module):
    """Multi-head attention with convolutional projections; ``forward(x [B, P + h * w, C]) -> [B, P + h * w, C]``.

    ``grid`` (the token grid ``(h, w)``) and ``num_prefix_tokens`` (``P``: 1 for the [CLS] stage) are set by the
    model that holds it. ``q_norm`` / ``k_norm`` are identities called on the per-head q and k, as in timm's
    ``Attention``, so that sarvit's capture hooks read them there.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, kv_stride: int = 2, **_timm_attention_options) -> None:
        super().__init__()  # qk_norm, scale_norm, norm_layer ...: timm's Block passes them; CvT has none
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = dim ** -0.5  # CvT's code scales by the full width
        self.kv_stride, self.grid, self.num_prefix_tokens = kv_stride, None, 0
        self.conv_q, self.conv_k, self.conv_v = (ConvProjection(dim, stride) for stride in (1, kv_stride, kv_stride))
        self.proj_q, self.proj_k, self.proj_v = (nn.Linear(dim, dim, bias=qkv_bias) for _ in range(3))
        self.q_norm, self.k_norm = nn.Identity(), nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    @property
    def key_grid(self) -> tuple[int, int]:
        """The squeezed grid of the keys (stride ``kv_stride``): what S is laid out on."""
        return tuple(_conv_size(side, 3, self.kv_stride, 1) for side in self.grid)

    def _heads(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.reshape(*tokens.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise SarvitError("attn_mask: CvT's convolutional attention takes no attention mask")
        B, N, C = x.shape
        prefix, tokens = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        fmap = tokens.transpose(1, 2).reshape(B, C, *self.grid)
        q, k, v = (self._heads(linear(torch.cat([prefix, conv(fmap)], dim=1))) for conv, linear in
                   ((self.conv_q, self.proj_q), (self.conv_k, self.proj_k), (self.conv_v, self.proj_v)))
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0,
                                           scale=self.scale)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class ConvEmbed(nn.Module):
    """CvT's convolutional token embedding: an overlapping strided conv, then LayerNorm; ``[B, C_in, H, W] ->
    [B, h * w, C]``."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(dim)
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


EMBEDDINGS = ((7, 4, 2), (3, 2, 1), (3, 2, 1))  # (kernel, stride, padding) of the three token embeddings


class CvTStem(nn.Module):
    """CvT's stages 1-2 and the stage-3 token embedding, in timm's patch-embedding place: images ``[B, 3, H, W]``
    -> stage-3 tokens ``[B, (H/16) * (W/16), embed_dim]``; ``grid_size`` is the stage-3 token grid."""

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 384, dims=(64, 192),
                 depths=(1, 2), heads=(1, 3), **_patch_embed_options) -> None:  # options of timm's PatchEmbed only
        super().__init__()
        if to_2tuple(patch_size) != (16, 16):
            raise SarvitError(f"patch_size: CvT's token embeddings have an overall stride of 16, got {patch_size!r}")
        self.img_size, self.patch_size = to_2tuple(img_size), (16, 16)
        self.embeds, self.stages, widths, size = nn.ModuleList(), nn.ModuleList(), (in_chans, *dims, embed_dim), self.img_size
        for index, (kernel, stride, padding) in enumerate(EMBEDDINGS):
            self.embeds.append(ConvEmbed(widths[index], widths[index + 1], kernel, stride, padding))
            size = tuple(_conv_size(side, kernel, stride, padding) for side in size)
            if index < 2:
                blocks = nn.ModuleList(Block(dims[index], heads[index], qkv_bias=True, attn_layer=ConvAttention)
                                       for _ in range(depths[index]))
                set_grid(blocks, size, num_prefix_tokens=0)
                self.stages.append(blocks)
        self.grid_size = size
        self.num_patches = size[0] * size[1]

    def feat_ratio(self, as_scalar: bool = True):
        return 16 if as_scalar else (16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for embed, blocks in zip(self.embeds, self.stages):
            x = embed(x)
            for block in blocks:
                x = block(x)
            grid = blocks[0].attn.grid
            x = x.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        return self.embeds[-1](x)


def set_grid(blocks, grid: tuple[int, int], num_prefix_tokens: int) -> None:
    """Tell each block's :class:`ConvAttention` the token grid it reshapes its tokens to."""
    for block in blocks:
        block.attn.grid, block.attn.num_prefix_tokens = tuple(grid), num_prefix_tokens


default_cfgs = generate_default_cfgs({
    "cvt_13": {"num_classes": 1000, "input_size": (3, 224, 224), "first_conv": "patch_embed.embeds.0.proj",
               "classifier": "head", "license": "mit"},
})


@register_model
def cvt_13(pretrained: bool = False, stage_dims=None, stage_depths=(1, 2), stage_heads=None,
           **kwargs) -> VisionTransformer:
    """CvT-13 (20 M parameters): stages 1-2 (``stage_dims`` / ``stage_depths`` / ``stage_heads``) in the stem,
    stage 3 as the ViT (``embed_dim`` 384, ``depth`` 10, ``num_heads`` 6). No pretrained weights are shipped.

    ``stage_dims`` default to CvT-13's ratios of the last width (1/6 and 1/2 of ``embed_dim``: 64, 192) and
    ``stage_heads`` to one head per 64 channels (1, 3), so that ``embed_dim`` alone scales the model.
    """
    if pretrained:
        raise SarvitError("cvt_13 has no pretrained weights: expected pretrained=False, got pretrained=True")
    width = kwargs.get("embed_dim", 384)
    dims = tuple(stage_dims or (width // 6, width // 2))
    heads = tuple(stage_heads or (max(1, dim // 64) for dim in dims))
    if any(dim < 1 or dim % head for dim, head in zip(dims, heads)):
        raise SarvitError(f"stage_dims {dims} must be >= 1 and divisible by stage_heads {heads}")
    stem = partial(CvTStem, dims=dims, depths=tuple(stage_depths), heads=heads)
    options = dict(patch_size=16, embed_dim=384, depth=10, num_heads=6, mlp_ratio=4.0, qkv_bias=True,
                   pos_embed="none", embed_layer=stem, attn_layer=ConvAttention)
    model = build_model_with_cfg(VisionTransformer, "cvt_13", pretrained=False, **{**options, **kwargs})
    set_grid(model.blocks, model.patch_embed.grid_size, model.num_prefix_tokens)
    return model
