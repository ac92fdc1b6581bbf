"""Every `--reg` term on every model family (issue 22): a few CPU training steps of the run's RegularizedModel, the
loss finite and the term's own gradient reaching the last block; the terms that do not apply are refused."""
import pytest
import torch
import torch.nn.functional as F

import sarvit
from sarvit.models.pyramids import capture_blocks
from sarvit.train.regularizers import RegTerm, RegularizedModel

VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
FAMILIES = {  # family: (timm name, query, timm kwargs); every last grid is at least 3x3
    "ViT": ("vit_tiny_patch16_224", "cls", VIT),
    "ViT-gap": ("vit_base_patch16_gap_224", "mean", VIT),
    "DeiT-III": ("deit3_small_patch16_224", "cls", VIT),
    "Eva-RoPE": ("vit_small_patch16_rope_224", "cls", VIT),
    "T2T": ("t2t_vit_14", "cls", dict(img_size=48, embed_dim=32, depth=2, num_heads=2, num_classes=5)),
    "PVT-v1": ("pvt_small", "cls", dict(img_size=96, embed_dim=32, depth=2, num_heads=2, num_classes=5)),
    "PVT-v2": ("pvt_v2_b0", "pooled", dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 2), num_heads=(1, 1, 2, 2),
                                           num_classes=5)),
    "CvT": ("cvt_13", "cls", dict(img_size=96, embed_dim=48, depth=2, num_heads=2, num_classes=5)),
    "Swin": ("swin_tiny_patch4_window7_224", "mean", dict(img_size=64, patch_size=4, embed_dim=16, depths=(1, 1, 2),
                                                          num_heads=(1, 2, 2), window_size=4, num_classes=5)),
}
SIZE = {"T2T": 48, "PVT-v1": 96, "PVT-v2": 96, "CvT": 96, "Swin": 64}
TERMS = ("spatial-entropy", "tv", "nonspatial-entropy", "distance", "patch-similarity", "drloc")
ATTENTION_TERMS = ("distance", "patch-similarity")
NOT_APPLICABLE = {("CvT", "distance"), ("CvT", "patch-similarity")}  # CvT's attention is [T, 1 + T/4]


def build(family, term):
    name, query, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    model = sarvit.create_model(name, query=query, **kwargs)
    return RegularizedModel(model, [RegTerm(term, 0.01, -1 if term in ATTENTION_TERMS else None)])


@pytest.mark.parametrize("family, term", [(f, t) for f in FAMILIES for t in TERMS if (f, t) not in NOT_APPLICABLE])
def test_term_trains_and_reaches_the_last_block(family, term):
    regularized = build(family, term).train()
    size = SIZE.get(family, 32)
    x, y = torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.AdamW(regularized.parameters(), lr=1e-3)
    last = list(capture_blocks(regularized.model)[-1].parameters())
    for step in range(2):
        logits, terms = regularized(x)
        assert terms.shape == (1,) and torch.isfinite(terms).all()
        optimizer.zero_grad()
        if step == 0:  # the term alone: its gradient reaches the last block's weights
            terms.sum().backward(retain_graph=True)
            assert sum(float(p.grad.abs().sum()) for p in last if p.grad is not None) > 0
            optimizer.zero_grad()
        loss = F.cross_entropy(logits, y) + 0.01 * terms.sum()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)


@pytest.mark.parametrize("family, term", sorted(NOT_APPLICABLE))
def test_terms_that_do_not_apply_are_refused(family, term):
    with pytest.raises(sarvit.SarvitError, match=rf"--reg {term}: CvT's attention is \[T, 1 \+ T/4\]"):
        build(family, term)
