"""SAR surgery for timm Vision Transformers, with capture (:mod:`sarvit.models.capture`) in their forward.

The last block of a timm ``VisionTransformer`` is replaced by :class:`SARBlock`, which keeps the
original submodules under their timm names (``norm1``, ``attn``, ``ls1``, ``drop_path1``, ``norm2``,
``mlp``, ``ls2``, ``drop_path2``) so state dicts stay interchangeable with timm's. With every switch
off it computes exactly timm's ``Block``; with the SAR switches on it computes Eq. 10-11:

    z' = MSA(LN(z))            (no MSA skip connection)
    z  = MLP(z') + z'          (no LayerNorm before the MLP; the MLP skip stays)

The block's ``attn`` is timm's ``Attention`` itself, running its own ``forward``.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import asdict, dataclass

import timm
import torch
from timm.layers import Attention
from timm.models.eva import Eva, EvaBlock
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ..checks import check_choice, check_model
from ..errors import SarvitError, SarvitTypeError
from .capture import (SAR_KWARGS, Capture, begin_capture, capture_request, disarm_capture, enable_capture,  # noqa: F401
                      end_capture, has_class_token, patch_grid)  # Capture: for the docstring examples
from .pyramids import PYRAMIDS, PVTv2SARBlock, SwinSARBlock, last_stage_blocks, make_sar_pyramid
from .query import ATTENTIONS, QUERIES
from .sar_eva import EvaSARBlock

__all__ = ["SARBlock", "SARConfig", "create_model", "sar_config", "SIMILARITIES"]

SIMILARITIES = ("dot", "cosine")


@dataclass(frozen=True)
class SARConfig:
    """The last-block switches: every row of the papers' ablation (Tab. 1) is one setting.

    ``remove_last_skip``: drop the MSA skip connection (Eq. 10). ``remove_last_norm``: drop the
    LayerNorm before the MLP (Eq. 11). ``remove_last_mlp_skip``: drop the MLP skip too (row D).
    ``similarity``: ``"dot"`` for Eq. 4 (``<q_cls, k> * scale``) or ``"cosine"`` for Eq. 15.
    ``query``: which query S is read from: ``"cls"`` (the papers'), ``"mean"`` or ``"pooled"``
    (:mod:`sarvit.models.query`).
    """

    remove_last_skip: bool = False
    remove_last_norm: bool = False
    remove_last_mlp_skip: bool = False
    similarity: str = "dot"
    query: str = "cls"


class SARBlock(nn.Module):
    """A timm ``Block`` with switchable skip/LayerNorm removal; ``forward(x [B, N, C]) -> [B, N, C]``.

    ``attn`` is the block's own timm ``Attention`` running its own ``forward``; the [CLS] maps are read
    around it by :func:`sarvit.models.capture.capturing`.
    """

    def __init__(self, block: Block, config: SARConfig) -> None:
        super().__init__()
        if not isinstance(getattr(block, "attn", None), ATTENTIONS):
            raise SarvitTypeError(f"block must be a timm Block whose attn is timm's Attention (or Eva's, CvT's), got a "
                                  f"{type(block).__name__} with attn {type(getattr(block, 'attn', None)).__name__}")
        self.norm1, self.attn, self.ls1, self.drop_path1 = block.norm1, block.attn, block.ls1, block.drop_path1
        self.norm2 = nn.Identity() if config.remove_last_norm else block.norm2
        self.mlp, self.ls2, self.drop_path2 = block.mlp, block.ls2, block.drop_path2
        self.config = config

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise SarvitError("the SAR last block does not support attention masks or causal attention")
        # Stochastic depth drops a residual branch; a branch without its skip is the whole signal, so it stays.
        attended = self.ls1(self.attn(self.norm1(x)))
        x = attended if self.config.remove_last_skip else x + self.drop_path1(attended)
        mlp_out = self.ls2(self.mlp(self.norm2(x)))
        return mlp_out if self.config.remove_last_mlp_skip else x + self.drop_path2(mlp_out)




def _before_forward(model: VisionTransformer, args: tuple, kwargs: dict):
    """Forward pre-hook of a SAR model: checks the images and takes sarvit's keyword arguments
    (``return_maps``, ``return_attention``, ``capture``) out of the call before timm's own ``forward`` runs,
    arming the capture hooks when they ask for something. A module-level function, so the model pickles."""
    x = args[0] if args else kwargs.get("x")
    dynamic = getattr(model, "dynamic_img_size", False)
    expected = model.patch_embed.img_size
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or (
            not dynamic and expected is not None and tuple(x.shape[-2:]) != tuple(expected)):
        size = "H, W" if dynamic or expected is None else f"{expected[0]}, {expected[1]}"
        found = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise SarvitError(f"x: {type(model).__name__} expects images [B, C, {size}], got {found}; "
                          "build the model with img_size= to change its grid")
    recorder = enable_capture(model)
    recorder.as_tuple = None
    if recorder.plan is not None:  # a forward pass that raised left the hooks armed
        disarm_capture(model)
    if not any(key in kwargs for key in SAR_KWARGS):
        return None
    kwargs, capture, as_tuple = capture_request(kwargs)
    if capture is not None:
        if not capture.empty:
            config = model.blocks[-1].config
            begin_capture(model, capture, patch_grid(model, x), similarity=config.similarity, query=config.query)
        recorder.as_tuple = as_tuple
    return args, kwargs


def _after_forward(model: VisionTransformer, args: tuple, logits: torch.Tensor):
    """Forward hook of a SAR model: ``(logits, S[, attention])`` for ``return_maps`` / ``return_attention``,
    ``(logits, captured)`` for ``capture=``, the logits unchanged otherwise."""
    recorder = enable_capture(model)
    as_tuple, recorder.as_tuple = recorder.as_tuple, None
    if as_tuple is None:
        return None
    captured = end_capture(model)
    if as_tuple:
        return (logits, *(captured[key] for key in ("maps", "cls_attention") if key in captured))
    return logits, captured


def install_sar_forward(model: VisionTransformer) -> None:
    """Give ``model`` (a timm ViT whose last block is a :class:`SARBlock`) the ``forward(x, return_maps=,
    return_attention=, capture=)`` of a SAR model through two forward hooks; its class stays timm's."""
    enable_capture(model)  # idle hooks from the start, so a compiled model has them in its first trace
    model.register_forward_pre_hook(_before_forward, with_kwargs=True)
    model.register_forward_hook(_after_forward)


def create_model(
    name: str,
    *,
    sar: bool = True,
    remove_last_skip: bool | None = None,
    remove_last_norm: bool | None = None,
    remove_last_mlp_skip: bool = False,
    similarity: str = "dot",
    query: str = "cls",
    **timm_kwargs,
) -> nn.Module:
    """Build a timm ViT by name with SAR's last-block surgery and the [CLS] map capture.

    Args:
        name: a timm VisionTransformer-family model with a [CLS] token (``vit_*``, ``deit_*``
            including distilled, register-token and q/k-norm variants); or a model without a [CLS] token
            whose forward takes ``capture=`` (``arvit_base``), built by timm with its capture hooks installed:
            it has no SAR surgery, so every SAR switch must be off (``sar=False``).
        sar: the default for both removals (Eq. 10-11). ``sar=False`` keeps timm's block exactly.
        remove_last_skip: drop the last block's MSA skip connection; ``None`` follows ``sar``.
        remove_last_norm: drop the LayerNorm before the last MLP; ``None`` follows ``sar``.
        remove_last_mlp_skip: drop the last MLP skip (Tab. 1 row D); never part of SAR.
        similarity: ``"dot"`` (Eq. 4) or ``"cosine"`` (Eq. 15) for the captured maps.
        query: the query of S: ``"cls"`` (Eq. 4), or for a model without [CLS] (``class_token=False``,
            ``global_pool='avg'``) ``"mean"`` (the average patch query) or ``"pooled"`` (the query of the average
            patch embedding); see :mod:`sarvit.models.query`. timm's ``Eva`` (RoPE ViTs) takes all three;
            PVT-v2 (``pvt_v2_*``) and Swin (``swin_*``) take ``mean`` / ``pooled``, S read from their last stage
            (:mod:`sarvit.models.pyramids`).
        **timm_kwargs: passed to ``timm.create_model`` (``num_classes``, ``img_size``,
            ``drop_path_rate``, ``pretrained`` ...).

    Returns:
        The timm model, whose ``forward(x)`` returns logits ``[B, classes]``;
        ``forward(x, return_maps=True)`` returns ``(logits, S)`` with ``S [B, H, k, k]`` the
        pre-softmax similarity of the [CLS] query with each patch key;
        ``return_attention=True`` adds the post-softmax [CLS] attention over patch tokens
        ``[B, H, k, k]`` (order: logits, S, attention);
        ``forward(x, capture=Capture(...))`` returns ``(logits, captured)`` with ``captured`` a dict of
        what was asked (see :class:`sarvit.models.Capture`).

    Example:
        >>> model = create_model("vit_tiny_patch16_224", img_size=64, patch_size=8, num_classes=10)
        >>> logits, S = model(torch.randn(2, 3, 64, 64), return_maps=True)
        >>> tuple(logits.shape), tuple(S.shape)
        ((2, 10), (2, 3, 8, 8))
        >>> logits, captured = model(torch.randn(2, 3, 64, 64), capture=Capture(attention_blocks=(0,), tokens=True))
        >>> tuple(captured["attention"][0].shape), tuple(captured["tokens"].shape)
        ((2, 3, 65, 65), (2, 192, 8, 8))
        >>> type(model).__name__  # timm's own class: it pickles, deep-copies and compiles like any timm model
        'VisionTransformer'
    """
    if not isinstance(name, str) or not name:
        raise (SarvitError if isinstance(name, str) else SarvitTypeError)(
            f"name must be a timm model name (e.g. 'vit_tiny_patch16_224'), got {name!r}")
    _check_sizes(timm_kwargs)
    check_choice(similarity, "similarity", SIMILARITIES)
    config = SARConfig(
        remove_last_skip=sar if remove_last_skip is None else bool(remove_last_skip),
        remove_last_norm=sar if remove_last_norm is None else bool(remove_last_norm),
        remove_last_mlp_skip=bool(remove_last_mlp_skip),
        similarity=similarity,
        query=check_choice(query, "query", QUERIES),
    )
    if not timm.is_model(name):
        raise SarvitError(f"name: unknown timm model {name!r}; `timm.list_models('vit_*')` lists the ViTs")
    try:
        model = timm.create_model(name, **timm_kwargs)
    except (AssertionError, ValueError, ZeroDivisionError, TypeError) as error:  # timm's own checks of the sizes
        declared = _declared_class(name)
        if isinstance(error, TypeError) and declared is not None and not _vit_like(declared):
            raise _not_a_vit(name, declared) from None  # a CNN refusing ViT keywords (img_size, ...)
        raise SarvitError(f"could not build {name!r} with {timm_kwargs}: {error or type(error).__name__}") from None
    if not isinstance(model, VisionTransformer) and _captures(model):
        switched_on = [key for key, value in asdict(config).items() if value not in (False, "dot", "cls")]
        if switched_on:
            raise SarvitError(
                f"{name!r} ({type(model).__name__}) has no [CLS] token, and SAR's last-block surgery and loss need "
                f"a [CLS] query; got {', '.join(switched_on)} on: build it with sar=False, "
                "and regularize its attention with e.g. the distance loss"
            )
        enable_capture(model)  # idle hooks from the start, so a compiled model has them in its first trace
        return model
    if isinstance(model, PYRAMIDS):
        return make_sar_pyramid(model, name, config)
    if not isinstance(model, (VisionTransformer, Eva)):
        raise _not_a_vit(name, type(model))
    if query == "cls" and not has_class_token(model):
        raise SarvitError(f"query: {name!r} has no [CLS] token (class_token=False); 'cls' needs one, "
                          "use 'mean' or 'pooled'")
    if query == "cls" and model.global_pool not in ("token", ""):
        raise SarvitError(f"global_pool={model.global_pool!r}: the head of {name!r} would pool the patch tokens and "
                          "never read the [CLS] token whose attention SAR reads; keep global_pool='token'")
    grid = tuple(model.patch_embed.grid_size)
    if max(grid) < 3:
        raise SarvitError(f"img_size: a {grid[0]}x{grid[1]} patch grid has no two separate regions, so its spatial "
                          "entropy is always 0; give img_size at least 3 * patch_size")
    last = model.blocks[-1]
    surgery = {Block: SARBlock, EvaBlock: EvaSARBlock}.get(type(last))
    if surgery is None:
        raise SarvitError(
            f"{name!r} ends with a {type(last).__name__}; SAR supports timm's pre-norm Block and EvaBlock only"
        )
    model.blocks[-1] = surgery(last, config)
    install_sar_forward(model)
    return model


def _declared_class(name: str) -> type | None:
    """The class timm's entrypoint for ``name`` declares it returns (``def resnet18(...) -> ResNet``), if any."""
    entrypoint = timm.models.model_entrypoint(name)
    try:
        declared = typing.get_type_hints(entrypoint).get("return")
    except Exception:  # an annotation timm's module cannot resolve: unknown, as if there were none
        return None
    return declared if isinstance(declared, type) else None


def _vit_like(cls: type) -> bool:
    return issubclass(cls, VisionTransformer) or "capture" in inspect.signature(cls.forward).parameters


def _not_a_vit(name: str, cls: type) -> SarvitError:
    family = timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1]
    return SarvitError(f"name: {name!r} is a {cls.__name__} (timm module '{family}'); SAR needs a timm "
                       "VisionTransformer (vit_*, deit_*) whose last block attends from a [CLS] token")


def _captures(model: nn.Module) -> bool:
    """A model that is not a [CLS] ViT but captures like one (ARViT): a ``forward(x, capture=...)`` and blocks
    whose ``attn`` is timm's ``Attention``."""
    blocks = getattr(model, "blocks", None)
    return (isinstance(blocks, nn.Module) and len(blocks) > 0
            and all(isinstance(getattr(block, "attn", None), Attention) for block in blocks)
            and "capture" in inspect.signature(model.forward).parameters)


def _check_sizes(timm_kwargs: dict) -> None:
    """Sizes timm would take and then fail on deep inside (a zero depth, a head count not dividing the width)."""
    for key in ("depth", "embed_dim", "num_heads", "patch_size", "img_size"):
        value = timm_kwargs.get(key)
        sides = value if isinstance(value, (tuple, list)) else (value,)
        if value is not None and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sides):
            raise SarvitError(f"{key} must be an integer >= 1, got {value!r}")
    width, heads = timm_kwargs.get("embed_dim"), timm_kwargs.get("num_heads")
    if isinstance(width, int) and isinstance(heads, int) and width % heads:  # Swin's heads are one per stage
        raise SarvitError(f"num_heads={heads} does not divide embed_dim={width}")
    image, patch = timm_kwargs.get("img_size"), timm_kwargs.get("patch_size")
    if isinstance(image, int) and isinstance(patch, int) and image < patch:
        raise SarvitError(f"img_size={image} is smaller than one patch (patch_size={patch})")


def sar_config(model: nn.Module) -> dict:
    """The last-block switches of a model built by :func:`create_model`, as plain data (all off for a model
    without a [CLS] token, such as ARViT, which has no SAR surgery)."""
    if isinstance(model, PYRAMIDS):
        block = last_stage_blocks(model)[-1]
        if not isinstance(block, (PVTv2SARBlock, SwinSARBlock)):
            raise SarvitError("model: this model was not built by sarvit.create_model")
        return asdict(block.config)
    block = check_model(model).blocks[-1]
    if not isinstance(model, VisionTransformer) and _captures(model):
        return asdict(SARConfig())
    if not isinstance(block, (SARBlock, EvaSARBlock)):
        raise SarvitError("model: this model was not built by sarvit.create_model")
    return asdict(block.config)
