"""create_model: the last block computes Eq. 10-11, S is <q_cls, k> * scale, weights round-trip."""
import io

import pytest
import timm
import torch
import torch.nn.functional as F

import sarvit
from sarvit import SarvitError, create_model, load_weights
from sarvit.models import sar_config

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5)


def tiny(name="vit_tiny_patch16_224", **kwargs):
    torch.manual_seed(0)
    return create_model(name, **{**TINY, **kwargs}).eval()


def tokens_before_last_block(model, x):
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    for block in model.blocks[:-1]:
        x = block(x)
    return x


def by_hand_qkv(block, z):
    """q, k, v [B, H, N, D] of the block's attention, from its own weights."""
    attn = block.attn
    B, N, _ = z.shape
    qkv = F.linear(block.norm1(z), attn.qkv.weight, attn.qkv.bias)
    q, k, v = qkv.reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    return attn.q_norm(q), attn.k_norm(k), v


@pytest.mark.parametrize(
    "flags,skip,norm,mlp_skip",
    [
        (dict(sar=False), True, True, True),  # A: baseline
        (dict(sar=False, remove_last_skip=True), False, True, True),  # B
        (dict(sar=True), False, False, True),  # C / F: Eq. 10-11
        (dict(sar=True, remove_last_mlp_skip=True), False, False, False),  # D
    ],
)
def test_last_block_reproduces_its_equations(flags, skip, norm, mlp_skip):
    model = tiny(**flags)
    x = torch.randn(2, 3, 32, 32)
    z = tokens_before_last_block(model, x)
    block = model.blocks[-1]
    q, k, v = by_hand_qkv(block, z)
    attn = ((q @ k.transpose(-1, -2)) * block.attn.scale).softmax(-1) @ v
    msa = block.attn.proj(attn.transpose(1, 2).reshape(z.shape))
    z_prime = msa + z if skip else msa
    mlp = block.mlp(block.norm2(z_prime) if norm else z_prime)
    expected = mlp + z_prime if mlp_skip else mlp
    torch.testing.assert_close(block(z), expected, rtol=1e-5, atol=1e-5)
    assert isinstance(block.norm2, torch.nn.LayerNorm) == norm


@pytest.mark.parametrize("extra", [{}, dict(qk_norm=True), dict(reg_tokens=4), dict(init_values=1e-5)])
def test_similarity_maps_are_scaled_cls_query_key_products(extra):
    model = tiny(**extra)
    x = torch.randn(2, 3, 32, 32)
    logits, S, A = model(x, return_maps=True, return_attention=True)
    z = tokens_before_last_block(model, x)
    q, k, _ = by_hand_qkv(model.blocks[-1], z)
    prefix = model.num_prefix_tokens
    row = torch.einsum("bhd,bhnd->bhn", q[:, :, 0], k) * model.blocks[-1].attn.scale
    torch.testing.assert_close(S, row[:, :, prefix:].reshape(2, 3, 4, 4), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(A, row.softmax(-1)[:, :, prefix:].reshape(2, 3, 4, 4), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, model(x))


def test_cosine_similarity_variant():
    model = tiny(similarity="cosine")
    x = torch.randn(1, 3, 32, 32)
    _, S = model(x, return_maps=True)
    q, k, _ = by_hand_qkv(model.blocks[-1], tokens_before_last_block(model, x))
    expected = F.cosine_similarity(q[:, :, :1], k[:, :, 1:], dim=-1).reshape(1, 3, 4, 4)
    torch.testing.assert_close(S, expected, rtol=1e-5, atol=1e-6)


def test_without_surgery_the_model_is_timm_exactly():
    model = tiny(sar=False)
    plain = timm.create_model("vit_tiny_patch16_224", **TINY).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=1e-6)
    assert list(model.state_dict()) == list(plain.state_dict())


def test_distilled_deit_returns_logits_and_maps():
    model = tiny("deit_tiny_distilled_patch16_224")
    logits, S = model(torch.randn(2, 3, 32, 32), return_maps=True)
    assert logits.shape == (2, 5) and S.shape == (2, 3, 4, 4)
    assert model.num_prefix_tokens == 2


def test_gradient_of_the_loss_reaches_the_last_query_and_key_weights():
    model = tiny().train()
    _, S = model(torch.randn(2, 3, 32, 32), return_maps=True)
    sarvit.SpatialEntropyLoss()(S).backward()
    assert model.blocks[-1].attn.qkv.weight.grad.abs().sum() > 0


def test_switch_defaults_follow_sar():
    assert sar_config(tiny()) == dict(
        remove_last_skip=True, remove_last_norm=True, remove_last_mlp_skip=False, similarity="dot", query="cls"
    )
    assert sar_config(tiny(sar=False))["remove_last_skip"] is False
    assert sar_config(tiny(sar=True, remove_last_norm=False))["remove_last_norm"] is False


def roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_plain_timm_checkpoint_loads_into_a_sar_model():
    plain = timm.create_model("vit_tiny_patch16_224", **TINY)
    model = tiny()
    report = load_weights(model, roundtrip(plain.state_dict()))
    assert report.removed_by_surgery == ["blocks.1.norm2.weight", "blocks.1.norm2.bias"]
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, plain.blocks[0].attn.qkv.weight)


def test_sar_checkpoint_loads_back_exactly():
    model = tiny()
    restored = create_model("vit_tiny_patch16_224", **TINY).eval()
    report = load_weights(restored, roundtrip(model.state_dict()))
    assert str(report) == "all keys loaded"
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(restored(x, return_maps=True), model(x, return_maps=True), rtol=0, atol=0)


def test_new_head_is_only_skipped_when_asked():
    source = tiny(num_classes=5).state_dict()
    target = tiny(num_classes=7)
    with pytest.raises(SarvitError, match="new_head=True.*head.weight"):
        load_weights(target, source)
    report = load_weights(target, source, new_head=True)
    assert report.head_dropped == ["head.weight", "head.bias"]


def test_other_architecture_names_the_mismatched_keys():
    with pytest.raises(SarvitError, match=r"blocks\.0\.attn\.qkv\.weight"):
        load_weights(tiny(), tiny(embed_dim=96).state_dict())
    with pytest.raises(SarvitError, match="checkpoint lacks: .*blocks.2.attn.qkv.weight"):
        load_weights(tiny(depth=3), tiny().state_dict())


@pytest.mark.parametrize(
    "name,kwargs,words",
    [
        ("vit_tiny_patch16_224", dict(class_token=False, global_pool="avg"), r"\[CLS\] token"),
        ("no_such_model_xyz", {}, "unknown timm model"),
        ("vit_tiny_patch16_224", dict(similarity="euclid"), "similarity"),
    ],
)
def test_unsupported_models_are_a_clear_error(name, kwargs, words):
    with pytest.raises(SarvitError, match=words):
        create_model(name, **{**TINY, **kwargs})


@pytest.mark.parametrize("kwargs", [dict(num_classes=3), dict(img_size=64, patch_size=8, num_classes=3)])
def test_a_cnn_is_not_a_vit(kwargs):
    with pytest.raises(SarvitError, match="ResNet .timm module .resnet..; SAR needs a timm VisionTransformer"):
        create_model("resnet18", **kwargs)


def test_stochastic_depth_only_drops_branches_that_keep_their_skip():
    model = tiny(drop_path_rate=0.9).train()
    z = torch.randn(64, 17, 48)
    torch.manual_seed(0)
    out = model.blocks[-1](z)
    assert (out.abs().sum(dim=(1, 2)) > 0).all()  # no sample loses its last-block output
    plain = tiny(sar=False, drop_path_rate=0.9).train()
    torch.manual_seed(0)
    dropped = plain.blocks[-1](z) - z  # with skips, some samples' branches are dropped entirely
    assert (dropped.abs().sum(dim=(1, 2)) == 0).any()


def test_wrong_image_size_is_a_clear_error():
    with pytest.raises(SarvitError, match=r"expects images \[B, C, 32, 32\], got shape \(1, 3, 48, 48\)"):
        tiny()(torch.randn(1, 3, 48, 48))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_sar_step_never_waits_for_the_host():
    model = create_model("vit_tiny_patch16_224", **TINY).cuda().train()
    images = torch.randn(8, 3, 32, 32, device="cuda")
    targets = torch.randint(0, 5, (8,), device="cuda")
    loss_fn = sarvit.SpatialEntropyLoss()
    loss_fn(model(images[:1], return_maps=True)[1])  # the first CUDA call verifies the kernel once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, S = model(images, return_maps=True)
            loss = F.cross_entropy(logits, targets) + 0.01 * loss_fn(S)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
