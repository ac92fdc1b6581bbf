"""The regularizers by name, with what each one reads from the model's capture and its default weight.

``REGULARIZERS[name].factory(embed_dim=..., num_prefix_tokens=..., **options)`` builds the module;
its ``forward`` takes, in order, the inputs named in ``needs``:

* ``"maps"``: S ``[B, H, k, k]`` of the last block (``captured["maps"]``);
* ``"attention"``: a chosen block's A ``[B, H, T, T]`` (``captured["attention"][block]``); the module
  was built with the model's ``num_prefix_tokens``;
* ``"tokens"``: the final patch tokens ``[B, C, k, k]`` (``captured["tokens"]``);
* ``"images"``: the input batch the model saw.

Every factory accepts ``embed_dim`` and ``num_prefix_tokens`` (and ignores the one it does not
need), so a caller can build any of them the same way; ``options`` go to the module's constructor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .attention_priors import DistanceAttentionLoss, PatchSimilarityLoss
from .drloc import DRLocLoss
from .nonspatial_entropy import NonSpatialEntropyLoss
from .spatial_entropy import SpatialEntropyLoss
from .total_variation import TotalVariationLoss

__all__ = ["RegularizerInfo", "REGULARIZERS", "CAPTURE_INPUTS"]

CAPTURE_INPUTS = ("maps", "attention", "tokens", "images")


@dataclass(frozen=True)
class RegularizerInfo:
    """One regularizer: its name, how to build it, what its forward takes, its default weight.

    Attributes:
        name: the registry key (also the ``--reg`` spelling).
        factory: ``factory(*, embed_dim, num_prefix_tokens, **options) -> nn.Module``.
        needs: the module's forward arguments, in order, named as in :data:`CAPTURE_INPUTS`.
        default_weight: lambda in ``loss = task_loss + lambda * module(...)``, from the source paper.
        doc: one line: what it is and where the weight comes from.
    """

    name: str
    factory: Callable[..., nn.Module]
    needs: tuple[str, ...]
    default_weight: float
    doc: str


def _ignoring_model_facts(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def factory(*, embed_dim: int | None = None, num_prefix_tokens: int | None = None, **options: Any) -> nn.Module:
        return cls(**options)

    return factory


def _with_prefix(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def factory(*, embed_dim: int | None = None, num_prefix_tokens: int = 1, **options: Any) -> nn.Module:
        return cls(num_prefix_tokens=num_prefix_tokens, **options)

    return factory


def _drloc(*, embed_dim: int, num_prefix_tokens: int | None = None, **options: Any) -> nn.Module:
    return DRLocLoss(embed_dim, **options)


REGULARIZERS: dict[str, RegularizerInfo] = {
    info.name: info
    for info in (
        RegularizerInfo(
            "spatial-entropy", _ignoring_model_facts(SpatialEntropyLoss), ("maps",), 0.01,
            "SAR's spatial entropy of S (Eq. 5-9); lambda 0.01, the papers' value for every model and dataset.",
        ),
        RegularizerInfo(
            "tv", _ignoring_model_facts(TotalVariationLoss), ("maps",), 0.01,
            "Total variation of S (ICLR draft, Eq. 14); the draft gives no lambda: SAR's 0.01, the loss it replaced.",
        ),
        RegularizerInfo(
            "nonspatial-entropy", _ignoring_model_facts(NonSpatialEntropyLoss), ("maps",), 0.01,
            "Entropy of S over all elements, no components (the ablation after Eq. 8); SAR's lambda 0.01.",
        ),
        RegularizerInfo(
            "drloc", _drloc, ("tokens",), 0.1,
            "Dense relative localization (Liu et al., NeurIPS 2021) with its own MLP head; lambda 0.1, the "
            "public code's value for the ViT-like T2T and CvT (0.5 for Swin).",
        ),
        RegularizerInfo(
            "distance", _with_prefix(DistanceAttentionLoss), ("attention",), 0.01,
            "ARViT's Manhattan-distance penalty on a block's attention (thesis Sec. 3.2); lambda 0.01, the "
            "authors' code (the thesis gives none).",
        ),
        RegularizerInfo(
            "patch-similarity", _with_prefix(PatchSimilarityLoss), ("attention", "images"), 0.005,
            "ARViT's Gram-matrix patch-similarity penalty on a block's attention (thesis Sec. 3.3); lambda 0.005, "
            "the similarity paper's value.",
        ),
    )
}
