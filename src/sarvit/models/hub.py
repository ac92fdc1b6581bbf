"""``sar_vit``: a timm model name for a ViT with SAR's last-block surgery, so that timm's own tools rebuild it.

timm's hub format describes a model by its ``architecture`` and ``model_args`` (``config.json``). A SAR model is a
timm ViT whose last block has no MSA skip and no LayerNorm before its MLP, which no stock timm name can describe;
``sar_vit`` can: its ``model_args`` name the ``base`` ViT, the ``sar`` switches and the base's own arguments, and
the builder is :func:`sarvit.create_model`, so the rebuilt model captures ``S`` as any sarvit model does::

    import sarvit, timm
    model = timm.create_model("local-dir:exported/", pretrained=True)     # what `sarvit export` wrote
    logits, S = model(images, return_maps=True)
    backbone = timm.create_model("local-dir:exported/", pretrained=True, features_only=True, out_indices=(3, 7, 11))

timm's ``features_only`` and ``forward_intermediates`` work as for its ViTs (timm's feature getter, the same
``feature_cfg`` as ``vision_transformer``).
"""
from __future__ import annotations

from typing import Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .sar_vit import create_model

__all__ = ["SAR_VIT"]

SAR_VIT = "sar_vit"

default_cfgs = generate_default_cfgs({
    # no fixed input size and no class count here: the base ViT's arguments (model_args) decide them
    SAR_VIT: {"num_classes": -1, "input_size": (3, 224, 224), "mean": IMAGENET_DEFAULT_MEAN,
              "std": IMAGENET_DEFAULT_STD, "first_conv": "patch_embed.proj", "classifier": "head",
              "license": "apache-2.0"},
})


def _build(base: str = "vit_small_patch16_224", sar: Optional[dict] = None, **timm_kwargs) -> nn.Module:
    """``sar=None``: SAR as the papers use it (both removals); a dict: exactly those switches (the rest off)."""
    if sar is None:
        return create_model(base, **timm_kwargs)
    return create_model(base, sar=False, **sar, **timm_kwargs)


@register_model
def sar_vit(pretrained: bool = False, **kwargs) -> nn.Module:
    """A timm ViT (``base``, default ``vit_small_patch16_224``) with SAR's last-block surgery (``sar``: the
    switches of :func:`sarvit.create_model`; default both removals of Eq. 10-11); other keyword arguments go
    to the base ViT. Pretrained weights exist only as exports (``local-dir:``)."""
    return build_model_with_cfg(_build, SAR_VIT, pretrained, feature_cfg=dict(out_indices=3, feature_cls="getter"),
                                **kwargs)
