"""One error contract for the library: bad input to any public function raises SarvitError (a ValueError; a
wrong type also a TypeError) whose one-line message names the Python argument and never a command-line flag."""
from __future__ import annotations

import importlib
import math
import re

import pytest
import torch
from torch import nn

import sarvit
from sarvit import SarvitError, SarvitTypeError
from sarvit import losses, metrics, models, ops
from sarvit import figures

TINY = dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2, num_classes=4)
S = torch.rand(2, 3, 4, 4)
A = torch.rand(2, 3, 17, 17).softmax(-1)
MASK = torch.ones(2, 8, 8, dtype=torch.bool)


def tiny():
    return sarvit.create_model("vit_tiny_patch16_224", **TINY)


# (public name, call with one bad argument, the argument it must name, the error class)
CASES = [
    ("connected_components", lambda: ops.connected_components(torch.zeros(4, 4)), "mask", TypeError),
    ("connected_components", lambda: ops.connected_components(torch.zeros(4, dtype=torch.bool)), "mask", ValueError),
    ("connected_components", lambda: ops.connected_components(MASK, 8.0), "connectivity", ValueError),
    ("connected_components", lambda: ops.connected_components(MASK, method="cuda"), "method", ValueError),
    ("connected_components", lambda: ops.connected_components(MASK.to("meta")), "mask", ValueError),
    ("hooking_rounds", lambda: ops.hooking_rounds(-1), "num_pixels", ValueError),
    ("spatial_entropy", lambda: sarvit.spatial_entropy([[1.0]]), "S", TypeError),
    ("spatial_entropy", lambda: sarvit.spatial_entropy(S[0]), "S", ValueError),
    ("spatial_entropy", lambda: sarvit.spatial_entropy(S, connectivity=8.0), "connectivity", ValueError),
    ("spatial_entropy", lambda: sarvit.spatial_entropy(S, eps=-1.0), "eps", ValueError),
    ("spatial_entropy", lambda: sarvit.spatial_entropy(S, eps=math.nan), "eps", ValueError),
    ("spatial_entropy", lambda: sarvit.spatial_entropy(S.to("meta")), "S", ValueError),
    ("SpatialEntropyLoss", lambda: sarvit.SpatialEntropyLoss(connectivity=6), "connectivity", ValueError),
    ("SpatialEntropyLoss", lambda: sarvit.SpatialEntropyLoss(eps="small"), "eps", TypeError),
    ("total_variation", lambda: losses.total_variation(S[0]), "S", ValueError),
    ("TotalVariationLoss", lambda: losses.TotalVariationLoss()(S.long()), "S", TypeError),
    ("nonspatial_entropy", lambda: losses.nonspatial_entropy(S, eps=0.0), "eps", ValueError),
    ("NonSpatialEntropyLoss", lambda: losses.NonSpatialEntropyLoss(eps=-1), "eps", ValueError),
    ("drloc_loss", lambda: losses.drloc_loss(S, nn.Linear(6, 2), num_pairs=0), "num_pairs", ValueError),
    ("DRLocLoss", lambda: losses.DRLocLoss(embed_dim=0), "embed_dim", ValueError),
    ("manhattan_penalty", lambda: losses.manhattan_penalty((0, 3)), "grid_size", ValueError),
    ("manhattan_penalty", lambda: losses.manhattan_penalty((2, 2), "cubic"), "penalty", ValueError),
    ("distance_attention_loss", lambda: losses.distance_attention_loss(A, num_prefix_tokens=-1),
     "num_prefix_tokens", ValueError),
    ("DistanceAttentionLoss", lambda: losses.DistanceAttentionLoss(beta=0), "beta", ValueError),
    ("patch_gram_distances", lambda: losses.patch_gram_distances(torch.rand(1, 3, 4, 4), (2,)), "grid_size",
     ValueError),
    ("patch_similarity_loss", lambda: losses.patch_similarity_loss(A, torch.rand(2, 3, 32)), "images", ValueError),
    ("PatchSimilarityLoss", lambda: losses.PatchSimilarityLoss(reduction="mean"), "reduction", ValueError),
    ("check_maps", lambda: losses.check_maps(torch.rand(2, 3, 0, 4)), "S", ValueError),
    ("create_model", lambda: sarvit.create_model(7), "name", TypeError),
    ("fused_spatial_entropy", lambda: ops.fused_spatial_entropy(S), "maps", ValueError),
    ("fused_spatial_entropy", lambda: ops.fused_spatial_entropy(S[0], connectivity=6), "connectivity", ValueError),
    ("fused_spatial_entropy", lambda: ops.fused_spatial_entropy(torch.rand(1, 65, 65)), "maps", ValueError),
    ("knn_scores", lambda: metrics.knn_scores(torch.rand(3, 2), torch.zeros(3), torch.rand(1, 4), 2), "test_features",
     ValueError),
    ("knn_scores", lambda: metrics.knn_scores(torch.rand(3, 2), torch.zeros(2), torch.rand(1, 2), 2), "train_labels",
     ValueError),
    ("knn_scores", lambda: metrics.knn_scores(torch.rand(3, 2), torch.zeros(3), torch.rand(1, 2), 2, k=4), "k",
     ValueError),
    ("knn_scores", lambda: metrics.knn_scores(torch.rand(3, 2), torch.zeros(3), torch.rand(1, 2), 2, k=2, temperature=0),
     "temperature", ValueError),
    ("topk_accuracy", lambda: metrics.topk_accuracy(torch.rand(2, 3), torch.zeros(3)), "labels", ValueError),
    ("topk_accuracy", lambda: metrics.topk_accuracy(torch.rand(2, 3), torch.zeros(2), ks=(0,)), "ks", ValueError),
    ("create_model", lambda: sarvit.create_model("no_such_vit"), "name", ValueError),
    ("create_model", lambda: sarvit.create_model("vit_tiny_patch16_224", similarity="l2"), "similarity", ValueError),
    ("create_model", lambda: sarvit.create_model("vit_tiny_patch16_224", **{**TINY, "depth": 0}), "depth",
     ValueError),
    ("create_model", lambda: sarvit.create_model("vit_tiny_patch16_224", **{**TINY, "global_pool": "avg"}),
     "global_pool", ValueError),
    ("create_model", lambda: sarvit.create_model("vit_tiny_patch16_224", **{**TINY, "img_size": 7, "patch_size": 4}),
     "img_size", ValueError),
    ("create_model", lambda: sarvit.create_model("resnet18", num_classes=3), "name", ValueError),
    ("load_weights", lambda: sarvit.load_weights(tiny(), "weights.pth"), "state_dict", TypeError),
    ("load_weights", lambda: sarvit.load_weights(nn.Linear(2, 2), {}), "model", TypeError),
    ("load_weights", lambda: sarvit.load_weights(tiny(), {"head.weight": torch.zeros(3, 32)}), "state_dict",
     ValueError),
    ("Capture", lambda: models.Capture(attention_blocks=(0.5,)), "attention_blocks", TypeError),
    ("capturing", lambda: models.capturing(tiny(), models.Capture(attention_blocks=(5,)), (4, 4)).__enter__(),
     "attention_blocks", ValueError),
    ("capturing", lambda: models.capturing(tiny(), "maps", (4, 4)).__enter__(), "capture", TypeError),
    ("model forward", lambda: tiny()(torch.rand(1, 3, 16, 16)), "x", ValueError),
    ("model forward", lambda: tiny()(torch.rand(1, 3, 32, 32), capture="maps"), "capture", TypeError),
    ("patch_grid", lambda: models.patch_grid(nn.Linear(2, 2), torch.rand(1, 3, 32, 32)), "model", TypeError),
    ("enable_capture", lambda: models.enable_capture(nn.Linear(2, 2)), "model", TypeError),
    ("has_class_token", lambda: models.has_class_token("vit"), "model", TypeError),
    ("sar_config", lambda: models.sar_config(nn.Linear(2, 2)), "model", TypeError),
    ("infer_model_kwargs", lambda: models.infer_model_kwargs("weights.pth"), "state", TypeError),
    ("ModelSpec", lambda: models.ModelSpec(""), "name", ValueError),
    ("ModelSpec", lambda: models.ModelSpec("vit_tiny_patch16_224", {"remove_everything": True}), "sar", ValueError),
    ("ModelSpec", lambda: models.ModelSpec.from_dict([1]), "data", TypeError),
    ("ModelSpec", lambda: models.ModelSpec.of(nn.Linear(2, 2)), "model", TypeError),
    ("ARViT", lambda: models.ARViT(global_pool="token"), "global_pool", ValueError),
    ("SARBlock", lambda: models.SARBlock(nn.Linear(2, 2), models.SARConfig()), "block", TypeError),
    ("mass_threshold", lambda: metrics.mass_threshold(S, keep=0.0), "keep", ValueError),
    ("jaccard", lambda: metrics.jaccard(MASK.float(), MASK), "pred", TypeError),
    ("segmentation_jaccard", lambda: metrics.segmentation_jaccard(S, MASK[:1]), "foreground", ValueError),
    ("AttentionJaccard", lambda: metrics.AttentionJaccard(num_heads=0), "num_heads", ValueError),
    ("AttentionJaccard", lambda: metrics.AttentionJaccard(num_heads=3).update(S), "foreground", ValueError),
    ("HeadStats", lambda: metrics.HeadStats(num_heads=2.5), "num_heads", TypeError),
    ("HeadStats", lambda: metrics.HeadStats(num_heads=4).update(S), "S", ValueError),
    ("head_statistics", lambda: metrics.head_statistics(S, connectivity=3), "connectivity", ValueError),
    ("upsample_maps", lambda: figures.upsample_maps(S[0], 8), "maps", ValueError),
    ("attention_figure", lambda: figures.attention_figure(torch.zeros(8, 8, 3).numpy(), S), "attention", ValueError),
    ("denormalize", lambda: figures.denormalize(torch.rand(3, 4, 4), (0.5, 0.5), (0.2, 0.2, 0.2)), "mean",
     ValueError),
    ("new_figure", lambda: figures.new_figure(0, 1, figsize=(2, 2)), "rows", ValueError),
    ("save_pixels", lambda: figures.save_pixels(torch.zeros(4, 4, 3), "x.png"), "pixels", TypeError),
    ("figure_pixels", lambda: figures.figure_pixels("figure"), "figure", TypeError),
    ("save_figure", lambda: figures.save_figure("figure", "x.png"), "figure", TypeError),
]

# Public names that take no input to check (constants, plain records, the exceptions themselves).
NO_INPUT = {"SarvitError", "SarvitTypeError", "models", "SIMILARITIES", "LoadReport", "SARConfig", "HeadStatistics",
            "SegmentationJaccard", "RegularizerInfo", "REGULARIZERS", "CAPTURE_INPUTS", "COMPONENT_COLOURS",
            "SAR_VIT"}


@pytest.mark.parametrize("name,call,argument,kind", CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_names_the_argument(name, call, argument, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a failing call might write lands in the tree
    with pytest.raises(SarvitError) as caught:
        call()
    error = caught.value
    assert isinstance(error, kind) and isinstance(error, ValueError), type(error)
    assert isinstance(error, TypeError) == isinstance(error, SarvitTypeError)
    message = str(error)
    assert re.search(rf"(^|\W){re.escape(argument)}(\W|$)", message), message
    assert "--" not in message and "\n" not in message, message


def test_every_public_library_name_has_a_bad_input_case():
    public = {name for room in ("sarvit", "sarvit.ops", "sarvit.losses", "sarvit.models", "sarvit.metrics",
                                "sarvit.figures") for name in importlib.import_module(room).__all__}
    covered = {case[0] for case in CASES} | {"create_model"}
    assert public - covered - NO_INPUT == set()


def test_spatial_entropy_with_eps_zero_follows_its_doc():
    zeros = torch.zeros(2, 3, 4, 4, requires_grad=True)
    entropy = sarvit.spatial_entropy(zeros, eps=0.0)  # nothing above the mean: no component, entropy 0
    assert torch.equal(entropy, torch.zeros(2, 3))
    entropy.sum().backward()
    assert torch.isfinite(zeros.grad).all()
    two_blobs = torch.zeros(1, 1, 4, 4)
    two_blobs[0, 0, 0, 0] = two_blobs[0, 0, 3, 3] = 1.0
    assert sarvit.spatial_entropy(two_blobs, eps=0.0).item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("img_size,refused", [(7, True), (11, True), (12, False)])
def test_a_grid_without_two_separate_regions_is_refused(img_size, refused):
    build = lambda: sarvit.create_model("vit_tiny_patch16_224", **{**TINY, "img_size": img_size, "patch_size": 4})
    if refused:  # 1x1 and 2x2 grids: every map above its mean is one 8-connected region, entropy always 0
        with pytest.raises(SarvitError, match=r"img_size: a \dx\d patch grid"):
            build()
    else:
        assert build().patch_embed.grid_size == (3, 3)


def test_the_cli_says_flags_where_the_library_says_arguments():
    from sarvit.cli import flag_message

    assert flag_message("crop_scale: expected (min, max)", "train") == "--crop-scale: expected (min, max)"
    assert flag_message("build the model with depth=2, or", "eval") == "build the model with --depth 2, or"
    assert flag_message("img_size: a 1x1 patch grid", "train") == "--input-size: a 1x1 patch grid"
    assert flag_message("(a class count; to fine-tune, pass new_head=True)", "train") == "(a class count; to fine-tune, pass --finetune)"
    assert flag_message("(a class count; to fine-tune, pass new_head=True)", "eval") == "(a class count)"
