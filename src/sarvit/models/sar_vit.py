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
from dataclasses import asdict, dataclass

import timm
import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ..errors import SarvitError
from .capture import Capture, capturing, enable_capture, has_class_token, patch_grid

__all__ = ["SARBlock", "SARConfig", "create_model", "sar_config", "SIMILARITIES"]

SIMILARITIES = ("dot", "cosine")


@dataclass(frozen=True)
class SARConfig:
    """The last-block switches: every row of the papers' ablation (Tab. 1) is one setting.

    ``remove_last_skip``: drop the MSA skip connection (Eq. 10). ``remove_last_norm``: drop the
    LayerNorm before the MLP (Eq. 11). ``remove_last_mlp_skip``: drop the MLP skip too (row D).
    ``similarity``: ``"dot"`` for Eq. 4 (``<q_cls, k> * scale``) or ``"cosine"`` for Eq. 15.
    """

    remove_last_skip: bool = False
    remove_last_norm: bool = False
    remove_last_mlp_skip: bool = False
    similarity: str = "dot"


class SARBlock(nn.Module):
    """A timm ``Block`` with switchable skip/LayerNorm removal; ``forward(x [B, N, C]) -> [B, N, C]``.

    ``attn`` is the block's own timm ``Attention`` running its own ``forward``; the [CLS] maps are read
    around it by :func:`sarvit.models.capture.capturing`.
    """

    def __init__(self, block: Block, config: SARConfig) -> None:
        super().__init__()
        if not isinstance(block.attn, Attention):
            raise SarvitError(
                f"the last block's attention is a {type(block.attn).__name__}; SAR needs timm's Attention"
            )
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


class _SARForward:
    """Mixed into the model's own class: ``forward(x, return_maps=False, return_attention=False, capture=None)``."""

    def forward(
        self,
        x: torch.Tensor,
        return_maps: bool = False,
        return_attention: bool = False,
        capture: Capture | None = None,
        **kwargs,
    ):
        dynamic = getattr(self, "dynamic_img_size", False)
        expected = self.patch_embed.img_size
        if x.dim() != 4 or (not dynamic and expected is not None and tuple(x.shape[-2:]) != tuple(expected)):
            size = "H, W" if dynamic or expected is None else f"{expected[0]}, {expected[1]}"
            raise SarvitError(
                f"{type(self).__name__} expects images [B, C, {size}], got shape {tuple(x.shape)}; "
                "build the model with img_size= to change its grid"
            )
        as_tuple = return_maps or return_attention
        if as_tuple:
            if capture is not None:
                raise SarvitError("pass either capture= or return_maps/return_attention, not both")
            capture = Capture(maps=return_maps, cls_attention=return_attention)
        if capture is None:
            return super().forward(x, **kwargs)
        with capturing(self, capture, patch_grid(self, x), similarity=self.blocks[-1].config.similarity) as captured:
            logits = super().forward(x, **kwargs)
        if as_tuple:
            return (logits, *(captured[key] for key in ("maps", "cls_attention") if key in captured))
        return logits, captured


_SAR_CLASSES: dict[type, type] = {}


def _sar_class(base: type) -> type:
    if base not in _SAR_CLASSES:
        _SAR_CLASSES[base] = type(f"SAR{base.__name__}", (_SARForward, base), {})
    return _SAR_CLASSES[base]


def create_model(
    name: str,
    *,
    sar: bool = True,
    remove_last_skip: bool | None = None,
    remove_last_norm: bool | None = None,
    remove_last_mlp_skip: bool = False,
    similarity: str = "dot",
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
        >>> logits, S = model(torch.randn(2, 3, 64, 64), return_maps=True)  # S: [2, 3, 8, 8]
        >>> logits, captured = model(torch.randn(2, 3, 64, 64), capture=Capture(attention_blocks=(0,), tokens=True))
        >>> captured["attention"][0].shape, captured["tokens"].shape  # [2, 3, 65, 65], [2, 192, 8, 8]
    """
    if not isinstance(name, str) or not name:
        raise SarvitError(f"create_model: expected a timm model name (e.g. 'vit_tiny_patch16_224'), got {name!r}")
    _check_sizes(timm_kwargs)
    if similarity not in SIMILARITIES:
        raise SarvitError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    config = SARConfig(
        remove_last_skip=sar if remove_last_skip is None else bool(remove_last_skip),
        remove_last_norm=sar if remove_last_norm is None else bool(remove_last_norm),
        remove_last_mlp_skip=bool(remove_last_mlp_skip),
        similarity=similarity,
    )
    if not timm.is_model(name):
        raise SarvitError(f"unknown timm model {name!r}; `timm.list_models('vit_*')` lists the ViTs")
    family = timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1]
    try:
        model = timm.create_model(name, **timm_kwargs)
    except (AssertionError, ValueError, ZeroDivisionError) as error:  # timm's own checks of the sizes
        raise SarvitError(f"could not build {name!r} with {timm_kwargs}: {error or type(error).__name__}") from None
    except TypeError as error:
        with torch.device("meta"):  # which class is it? (no memory, no weights)
            model = timm.create_model(name)
        if isinstance(model, VisionTransformer) or _captures(model):
            raise SarvitError(f"could not build {name!r} with {timm_kwargs}: {error}") from None
    if not isinstance(model, VisionTransformer) and _captures(model):
        switched_on = [key for key, value in asdict(config).items() if value not in (False, "dot")]
        if switched_on:
            raise SarvitError(
                f"{name!r} ({type(model).__name__}) has no [CLS] token, and SAR's last-block surgery and loss need "
                f"a [CLS] query; got {', '.join(switched_on)} on: build it with sar=False (`sarvit train --no-sar`), "
                "and regularize its attention with e.g. `--reg distance`"
            )
        enable_capture(model)  # idle hooks from the start, so a compiled model has them in its first trace
        return model
    if not isinstance(model, VisionTransformer):
        raise SarvitError(
            f"{name!r} is a {type(model).__name__} (timm module '{family}'); SAR needs a timm VisionTransformer "
            "(vit_*, deit_*) whose last block attends from a [CLS] token"
        )
    if not has_class_token(model):
        raise SarvitError(f"{name!r} has no [CLS] token (class_token=False); SAR needs the [CLS] query")
    last = model.blocks[-1]
    if type(last) is not Block:
        raise SarvitError(
            f"{name!r} ends with a {type(last).__name__}; SAR supports timm's pre-norm Block only"
        )
    model.blocks[-1] = SARBlock(last, config)
    model.__class__ = _sar_class(type(model))
    enable_capture(model)  # idle hooks from the start, so a compiled model has them in its first trace
    return model


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
            raise SarvitError(f"create_model: {key} must be an integer >= 1, got {value!r}")
    width, heads = timm_kwargs.get("embed_dim"), timm_kwargs.get("num_heads")
    if width is not None and heads is not None and width % heads:
        raise SarvitError(f"create_model: num_heads={heads} does not divide embed_dim={width}")
    image, patch = timm_kwargs.get("img_size"), timm_kwargs.get("patch_size")
    if isinstance(image, int) and isinstance(patch, int) and image < patch:
        raise SarvitError(f"create_model: img_size={image} is smaller than one patch (patch_size={patch})")


def sar_config(model: nn.Module) -> dict:
    """The last-block switches of a model built by :func:`create_model`, as plain data (all off for a model
    without a [CLS] token, such as ARViT, which has no SAR surgery)."""
    block = model.blocks[-1]
    if not isinstance(model, VisionTransformer) and _captures(model):
        return asdict(SARConfig())
    if not isinstance(block, SARBlock):
        raise SarvitError("this model was not built by sarvit.create_model")
    return asdict(block.config)
