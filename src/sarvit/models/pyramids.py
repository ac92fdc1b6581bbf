"""SAR on timm's CLS-less pyramid ViTs: PVT-v2 (``pvt_v2_b0`` .. ``b5``) and Swin (``swin_*``).

Both end with a stage whose attention covers its whole token grid: PVT-v2's last stage has spatial-reduction ratio
1 (its keys are every patch of the grid), and Swin's last stage is one window when the window covers the grid
(224 px with window 7: a 7x7 grid in one 7x7 window; timm then sets the shift to 0). So S is read there, with
the query ``mean`` or ``pooled`` (:mod:`sarvit.models.query`; neither has a [CLS] token):

    S[b, h, y, x] = <q, k_(y,x)> * scale      over the last stage's grid [B, H, k_h, k_w]

The last block of the last stage gets SAR's surgery (:class:`PVTv2SARBlock`, :class:`SwinSARBlock`: no MSA skip,
no LayerNorm before the MLP), keeping timm's submodules under their timm names. q and k are read by forward hooks
on timm's own linears (PVT-v2: ``attn.q`` and ``attn.kv``; Swin: ``attn.qkv``), the block's input by a forward
pre-hook on the block, the final tokens by a hook on the final norm (PVT-v2: ``stages[-1].norm``; Swin:
``norm``). ``Capture.attention_blocks`` index the last stage's blocks.

Swin's relative position bias is **not** in S: the papers' S is the pre-softmax ``q . k`` of one query, and the
mean or pooled query has no position in the window, so no bias row belongs to it. ``cls_attention`` is the
softmax of that S. The full attention of a block (``attention_blocks``, for ``distance`` / ``patch-similarity``)
is the one the block used: ``softmax(q k^T * scale + bias)``.
"""
from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.models.pvt_v2 import Block as PVTv2Block, PyramidVisionTransformerV2
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from ..errors import SarvitError
from .capture import SAR_KWARGS, _Keep, _Recorder, capture_request

__all__ = ["PYRAMIDS", "PVTv2SARBlock", "SwinSARBlock", "capture_blocks", "is_pyramid", "last_stage_blocks", "make_sar_pyramid",
           "pyramid_spec_kwargs"]

PYRAMIDS = (PyramidVisionTransformerV2, SwinTransformer)


def is_pyramid(name: str) -> bool:
    """Whether the timm model ``name`` is a PVT-v2 or Swin (whose build arguments are not a ViT's)."""
    return timm.is_model(name) and timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1] in (
        "pvt_v2", "swin_transformer")


def last_stage_blocks(model: nn.Module) -> nn.Module:
    """The blocks of the last stage of a PVT-v2 or Swin model (what ``attention_blocks`` index)."""
    return (model.stages if isinstance(model, PyramidVisionTransformerV2) else model.layers)[-1].blocks


def capture_blocks(model: nn.Module) -> nn.Module:
    """The blocks ``Capture.attention_blocks`` index: a ViT's ``blocks``, a pyramid's last-stage blocks."""
    return last_stage_blocks(model) if isinstance(model, PYRAMIDS) else model.blocks


class _SARSwitches(nn.Module):
    """The submodules and switches shared by both surgeries (timm's names: ``norm1``, ``attn``, ``drop_path1``,
    ``norm2``, ``mlp``, ``drop_path2``)."""

    def __init__(self, block: nn.Module, config) -> None:
        super().__init__()
        self.norm1, self.attn, self.drop_path1 = block.norm1, block.attn, block.drop_path1
        self.norm2 = nn.Identity() if config.remove_last_norm else block.norm2
        self.mlp, self.drop_path2 = block.mlp, block.drop_path2
        self.config = config

    def _skip(self, x: torch.Tensor, branch: torch.Tensor, drop_path: nn.Module, removed: bool) -> torch.Tensor:
        # As in SARBlock: a branch without its skip is the whole signal, so stochastic depth leaves it.
        return branch if removed else x + drop_path(branch)


class PVTv2SARBlock(_SARSwitches):
    """timm's ``pvt_v2.Block`` with SAR's switches; ``forward(x [B, h * w, C], (h, w)) -> [B, h * w, C]``.
    With every switch off it computes timm's block exactly."""

    def forward(self, x: torch.Tensor, feat_size) -> torch.Tensor:
        x = self._skip(x, self.attn(self.norm1(x), feat_size), self.drop_path1, self.config.remove_last_skip)
        return self._skip(x, self.mlp(self.norm2(x), feat_size), self.drop_path2, self.config.remove_last_mlp_skip)


class SwinSARBlock(_SARSwitches):
    """timm's ``SwinTransformerBlock`` with SAR's switches, for a block whose one window is its whole grid (no
    shift, no padding, so window partition is the identity); ``forward(x [B, h, w, C]) -> [B, h, w, C]``."""

    def __init__(self, block: SwinTransformerBlock, config) -> None:
        super().__init__(block, config)
        self.window_size = tuple(block.window_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        if (H, W) != self.window_size:
            raise SarvitError(f"x: the SAR Swin block's window is {self.window_size}, its grid is {H}x{W}; build the "
                              "model for this input size (img_size=, window_size=)")
        attended = self.attn(self.norm1(x).reshape(B, H * W, C)).reshape(B, H, W, C)
        x = self._skip(x, attended, self.drop_path1, self.config.remove_last_skip).reshape(B, H * W, C)
        x = self._skip(x, self.mlp(self.norm2(x)), self.drop_path2, self.config.remove_last_mlp_skip)
        return x.reshape(B, H, W, C)


class _KeepInput:
    """Forward pre-hook on a last-stage block: keeps its input tokens ``[B, h * w, C]`` and its grid ``(h, w)``."""

    def __init__(self, recorder: _Recorder, key) -> None:
        self.recorder, self.key = recorder, key

    def __call__(self, module: nn.Module, args: tuple) -> None:
        if self.key in self.recorder.wanted:
            x = args[0]
            grid = tuple(args[1]) if x.dim() == 3 else tuple(x.shape[1:3])  # PVT-v2 passes its grid, Swin is NHWC
            self.recorder.kept[self.key] = (x.reshape(x.shape[0], -1, x.shape[-1]), grid)


def _check_last_stage(model: nn.Module, name: str) -> None:
    """Refuse a last stage whose attention does not cover its whole grid."""
    for block in last_stage_blocks(model):
        if isinstance(model, PyramidVisionTransformerV2):
            if block.attn.sr is not None or block.attn.pool is not None:
                raise SarvitError(f"{name!r}: its last stage reduces its keys (sr_ratios[-1] > 1 or linear=True), "
                                  "so no key belongs to one patch; SAR needs sr_ratios[-1]=1 and linear=False")
        elif tuple(block.window_size) != tuple(block.input_resolution) or any(block.shift_size):
            grid, window = block.input_resolution, block.window_size
            raise SarvitError(
                f"window_size: {name!r}'s last stage is a {grid[0]}x{grid[1]} grid in {window[0]}x{window[1]} "
                "windows, so no query meets every patch key and there is no S over the grid; give window_size >= "
                f"{max(grid)} (timm fits a larger window to the grid) or a smaller img_size")


def make_sar_pyramid(model: nn.Module, name: str, config) -> nn.Module:
    """SAR's surgery and capture hooks on a timm PVT-v2 / Swin ``model`` (``config``: a ``SARConfig``)."""
    if config.query == "cls":
        raise SarvitError(f"query: {name!r} ({type(model).__name__}) has no [CLS] token; use 'mean' or 'pooled'")
    if isinstance(model, SwinTransformer) and model.dynamic_img_size:
        raise SarvitError(f"dynamic_img_size: {name!r} would change its last-stage windows with the input size; "
                          "SAR needs one window over the whole last-stage grid, so build it with a fixed img_size")
    _check_last_stage(model, name)
    blocks = last_stage_blocks(model)
    surgery = {PVTv2Block: PVTv2SARBlock, SwinTransformerBlock: SwinSARBlock}.get(type(blocks[-1]))
    if surgery is None:
        raise SarvitError(f"{name!r} ends with a {type(blocks[-1]).__name__}; expected timm's pvt_v2 or Swin block")
    blocks[-1] = surgery(blocks[-1], config)
    recorder = _Recorder()
    for index, block in enumerate(blocks):
        block.register_forward_pre_hook(_KeepInput(recorder, (index, "input")))
        if isinstance(model, PyramidVisionTransformerV2):
            block.attn.q.register_forward_hook(_Keep(recorder, (index, "q")))
            block.attn.kv.register_forward_hook(_Keep(recorder, (index, "kv")))
        else:
            block.attn.qkv.register_forward_hook(_Keep(recorder, (index, "qkv")))
    final_norm = model.stages[-1].norm if isinstance(model, PyramidVisionTransformerV2) else model.norm
    final_norm.register_forward_hook(_Keep(recorder, "tokens"))
    model.__dict__["_capture_recorder"] = recorder
    model.register_forward_pre_hook(_before_forward, with_kwargs=True)
    model.register_forward_hook(_after_forward)
    return model


def _before_forward(model: nn.Module, args: tuple, kwargs: dict):
    """Takes ``return_maps`` / ``return_attention`` / ``capture`` out of the call and arms the hooks."""
    x = args[0] if args else kwargs.get("x")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        found = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise SarvitError(f"x: {type(model).__name__} expects images [B, C, H, W], got {found}")
    recorder = model.__dict__["_capture_recorder"]
    recorder.wanted, recorder.plan, recorder.as_tuple = (), None, None
    recorder.kept.clear()
    if not any(key in kwargs for key in SAR_KWARGS):
        return None
    kwargs, capture, as_tuple = capture_request(kwargs)
    if capture is None:
        return args, kwargs
    depth = len(last_stage_blocks(model))
    blocks = []
    for index in capture.attention_blocks:
        if not -depth <= index < depth:
            raise SarvitError(f"attention_blocks: block {index} is outside 0..{depth - 1} (the last stage's blocks)")
        blocks.append(index % depth)
    wanted = {(index, part) for index in blocks + ([depth - 1] if capture.maps or capture.cls_attention else [])
              for part in ("input", "q", "kv", "qkv")}
    if capture.tokens:  # and the last block's input, for the grid of PVT-v2's flat tokens
        wanted |= {"tokens", (depth - 1, "input")}
    recorder.wanted = tuple(wanted)
    recorder.plan, recorder.as_tuple = (capture, tuple(dict.fromkeys(blocks))), as_tuple
    return args, kwargs


def _per_head(model: nn.Module, kept: dict, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Block ``index``'s per-head q and k ``[B, H, N, D]`` float32 and its grid, from what its hooks kept."""
    attn = last_stage_blocks(model)[index].attn
    tokens, grid = kept[index, "input"]
    B, N = tokens.shape[:2]
    if isinstance(model, PyramidVisionTransformerV2):
        q = kept[index, "q"].float().reshape(B, N, attn.num_heads, -1).transpose(1, 2)
        k = kept[index, "kv"].float().reshape(B, N, 2, attn.num_heads, -1)[:, :, 0].transpose(1, 2)
        return q, k, grid
    qkv = kept[index, "qkv"]
    if qkv.shape[0] != B:  # more than one window per image: SwinSARBlock's own check comes first in the last block
        raise SarvitError(f"capture: blocks[{index}] of the last stage attends in {qkv.shape[0] // B} windows per image")
    q, k = qkv.float().reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)[:2]
    return q, k, grid


def _query(model: nn.Module, kept: dict, index: int, q: torch.Tensor, query: str) -> torch.Tensor:
    """The chosen query ``[B, H, D]``: the mean patch query, or the query of the mean input token."""
    if query == "mean":
        return q.mean(dim=2)
    block = last_stage_blocks(model)[index]
    pooled = block.norm1(kept[index, "input"][0].float().mean(dim=1, keepdim=True))
    if isinstance(model, PyramidVisionTransformerV2):
        projected = block.attn.q(pooled)
    else:
        width = block.attn.qkv.out_features // 3
        bias = block.attn.qkv.bias
        projected = F.linear(pooled, block.attn.qkv.weight[:width], None if bias is None else bias[:width])
    return projected.reshape(q.shape[0], block.attn.num_heads, -1).float()


def _after_forward(model: nn.Module, args: tuple, logits: torch.Tensor):
    """``(logits, S[, attention])`` for ``return_maps`` / ``return_attention``, ``(logits, captured)`` for
    ``capture=``, the logits unchanged otherwise."""
    recorder = model.__dict__["_capture_recorder"]
    plan, as_tuple, kept = recorder.plan, recorder.as_tuple, dict(recorder.kept)
    recorder.wanted, recorder.plan, recorder.as_tuple = (), None, None
    recorder.kept.clear()
    if plan is None:
        return None
    capture, attention_blocks = plan
    captured: dict = {}
    blocks = last_stage_blocks(model)
    with torch.autocast(logits.device.type, enabled=False):  # float32 maps under autocast too
        if capture.maps or capture.cls_attention:
            index = len(blocks) - 1
            q, k, grid = _per_head(model, kept, index)
            config = blocks[index].config
            query = _query(model, kept, index, q, config.query)
            row = torch.einsum("bhd,bhnd->bhn", query, k) * blocks[index].attn.scale
            if capture.maps:
                maps = (torch.einsum("bhd,bhnd->bhn", F.normalize(query, dim=-1), F.normalize(k, dim=-1))
                        if config.similarity == "cosine" else row)
                captured["maps"] = maps.reshape(*maps.shape[:2], *grid)
            if capture.cls_attention:
                captured["cls_attention"] = row.softmax(dim=-1).reshape(*row.shape[:2], *grid)
        if attention_blocks:
            captured["attention"] = {index: _attention(model, kept, index) for index in attention_blocks}
    if capture.tokens:
        tokens = kept["tokens"]
        grid = tuple(tokens.shape[1:3]) if tokens.dim() == 4 else kept[len(blocks) - 1, "input"][1]
        captured["tokens"] = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]).transpose(1, 2).reshape(
            tokens.shape[0], tokens.shape[-1], *grid)
    if as_tuple:
        return (logits, *(captured[key] for key in ("maps", "cls_attention") if key in captured))
    return logits, captured


def _attention(model: nn.Module, kept: dict, index: int) -> torch.Tensor:
    """Block ``index``'s post-softmax attention ``[B, H, N, N]`` float32, as the block computed it (Swin: with its
    relative position bias)."""
    attn = last_stage_blocks(model)[index].attn
    q, k, _ = _per_head(model, kept, index)
    logits = q @ k.transpose(-2, -1) * attn.scale
    if isinstance(model, SwinTransformer):
        logits = logits + attn._get_rel_pos_bias().float()
    return logits.softmax(dim=-1)


def pyramid_spec_kwargs(model: nn.Module) -> dict:
    """What a PVT-v2 / Swin model shows of its build, as ``timm.create_model`` keyword arguments."""
    if isinstance(model, PyramidVisionTransformerV2):
        blocks = [stage.blocks for stage in model.stages]
        return {"num_classes": model.num_classes, "in_chans": model.in_chans,
                "depths": tuple(len(b) for b in blocks), "embed_dims": tuple(b[0].attn.dim for b in blocks),
                "num_heads": tuple(b[0].attn.num_heads for b in blocks),
                "sr_ratios": tuple(b[0].attn.sr.stride[0] if b[0].attn.sr is not None else 1 for b in blocks),
                "mlp_ratios": tuple(b[0].mlp.fc1.out_features / b[0].attn.dim for b in blocks),
                "qkv_bias": blocks[0][0].attn.q.bias is not None}
    blocks = [stage.blocks for stage in model.layers]
    return {"num_classes": model.num_classes, "in_chans": model.in_chans,
            "img_size": tuple(model.patch_embed.img_size)[0], "patch_size": tuple(model.patch_embed.patch_size)[0],
            "embed_dim": model.embed_dim, "depths": tuple(len(b) for b in blocks),
            "num_heads": tuple(b[0].attn.num_heads for b in blocks),
            "window_size": tuple(tuple(b[0].window_size) for b in blocks),
            "mlp_ratio": blocks[0][0].mlp.fc1.out_features / blocks[0][0].attn.qkv.in_features,
            "qkv_bias": blocks[0][0].attn.qkv.bias is not None}
