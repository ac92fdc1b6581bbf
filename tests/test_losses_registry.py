"""REGULARIZERS: every name builds the same way and takes what its `needs` says, in that order."""
import pytest
import torch

from sarvit import SpatialEntropyLoss
from sarvit.losses import (
    CAPTURE_INPUTS,
    REGULARIZERS,
    DistanceAttentionLoss,
    DRLocLoss,
    NonSpatialEntropyLoss,
    PatchSimilarityLoss,
    RegularizerInfo,
    TotalVariationLoss,
)

EXPECTED = {
    "spatial-entropy": (SpatialEntropyLoss, ("maps",), 0.01),
    "tv": (TotalVariationLoss, ("maps",), 0.01),
    "nonspatial-entropy": (NonSpatialEntropyLoss, ("maps",), 0.01),
    "drloc": (DRLocLoss, ("tokens",), 0.1),
    "distance": (DistanceAttentionLoss, ("attention",), 0.01),
    "patch-similarity": (PatchSimilarityLoss, ("attention", "images"), 0.005),
}


def fake_capture(batch=2, heads=3, k=4, embed_dim=24, prefix=1):
    tokens = prefix + k * k
    return {
        "maps": torch.randn(batch, heads, k, k),
        "attention": torch.randn(batch, heads, tokens, tokens).softmax(-1),
        "tokens": torch.randn(batch, embed_dim, k, k),
        "images": torch.rand(batch, 3, 8 * k, 8 * k),
    }


def test_the_six_names_with_their_modules_needs_and_weights():
    assert set(REGULARIZERS) == set(EXPECTED)
    for name, (cls, needs, weight) in EXPECTED.items():
        info = REGULARIZERS[name]
        assert isinstance(info, RegularizerInfo) and info.name == name
        assert info.needs == needs and set(info.needs) <= set(CAPTURE_INPUTS)
        assert info.default_weight == weight and info.doc
        assert type(info.factory(embed_dim=24, num_prefix_tokens=1)) is cls


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("prefix", [0, 1])
def test_each_module_takes_its_needs_in_order_and_returns_a_differentiable_scalar(name, prefix):
    info = REGULARIZERS[name]
    module = info.factory(embed_dim=24, num_prefix_tokens=prefix)
    captured = fake_capture(prefix=prefix)
    for key in ("maps", "attention", "tokens"):
        captured[key].requires_grad_()
    loss = module(*(captured[need] for need in info.needs))
    assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert captured[info.needs[0]].grad is not None


def test_options_reach_the_module():
    assert REGULARIZERS["spatial-entropy"].factory(embed_dim=8, num_prefix_tokens=1, connectivity=4).connectivity == 4
    drloc = REGULARIZERS["drloc"].factory(embed_dim=8, num_prefix_tokens=1, num_pairs=16)
    assert drloc.num_pairs == 16 and drloc.embed_dim == 8
    distance = REGULARIZERS["distance"].factory(embed_dim=8, num_prefix_tokens=2, penalty="linear")
    assert distance.options["num_prefix_tokens"] == 2 and distance.options["penalty"] == "linear"
