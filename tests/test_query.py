"""The query choice (cls / mean / pooled) and RoPE (Eva) capture: S equals what the last block's weights give by
hand, from the block's own input tokens, for ViT, ViT-gap, DeiT-III and Eva-RoPE."""
import pytest
import torch
import torch.nn.functional as F

from sarvit import SarvitError, SpatialEntropyLoss, create_model
from sarvit.models import ModelSpec

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
VIT_FAMILIES = [("vit_tiny_patch16_224", "cls"), ("vit_tiny_patch16_224", "mean"), ("vit_tiny_patch16_224", "pooled"),
                ("vit_base_patch16_gap_224", "mean"), ("vit_base_patch16_gap_224", "pooled"),
                ("deit3_small_patch16_224", "cls"), ("deit3_small_patch16_224", "mean")]
ROPE = [("vit_small_patch16_rope_224", "cls"), ("vit_small_patch16_rope_224", "mean"),
        ("vit_small_patch16_rope_224", "pooled"), ("vit_small_patch16_rope_mixed_224", "cls"),
        ("vit_medium_patch16_rope_reg1_gap_256", "mean")]


def build(name, query, **extra):
    torch.manual_seed(0)
    model = create_model(name, query=query, **{**TINY, **extra}).eval()
    for block in model.blocks:  # the unfused path, so that the attention it softmaxes can be read (attn_drop)
        block.attn.fused_attn = False
    return model


def last_block_input(model, x):
    """The last block's input tokens [B, T, C] and its rope tensor (None for a ViT), read by plain hooks."""
    seen = {}

    def keep(module, args, kwargs):
        seen["z"], seen["rope"] = args[0], kwargs.get("rope")

    handle = model.blocks[-1].register_forward_pre_hook(keep, with_kwargs=True)
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["z"], seen["rope"]


def rotate_by_hand(x, rope, half):
    """RoPE on x [B, H, N, D] with rope [N, 2D] = (sin, cos): x cos + rot(x) sin (Su et al., Eq. 34)."""
    sin, cos = rope.float().tensor_split(2, dim=-1)
    if half:
        x1, x2 = x.chunk(2, dim=-1)
        turned = torch.cat([-x2, x1], dim=-1)
    else:
        turned = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)
    return x * cos + turned * sin


def queries_by_hand(attn, h):
    """Per-head q and k [B, H, T, D] of normed tokens h [B, T, C] from the attention's weights."""
    B, T, _ = h.shape
    qkv = F.linear(h, attn.qkv.weight, attn.qkv.bias)
    q, k, _ = qkv.reshape(B, T, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    return attn.q_norm(q), attn.k_norm(k)


def s_by_hand(model, x, query):
    """S [B, H, k, k] from the last block's weights: its input tokens z, norm1, qkv, q/k norm, rope."""
    z, rope = last_block_input(model, x)
    block, prefix = model.blocks[-1], model.num_prefix_tokens
    attn = block.attn
    with torch.no_grad():
        q, k = queries_by_hand(attn, block.norm1(z))
        half = getattr(attn, "rotate_half", False)
        if rope is not None:
            q = torch.cat([q[:, :, :prefix], rotate_by_hand(q[:, :, prefix:], rope, half)], dim=2)
            k = torch.cat([k[:, :, :prefix], rotate_by_hand(k[:, :, prefix:], rope, half)], dim=2)
        if query == "cls":
            q_one = q[:, :, 0]
        elif query == "mean":
            q_one = q[:, :, prefix:].mean(2)
        else:  # the query of the mean patch embedding: no position, so never rotated
            q_one = queries_by_hand(attn, block.norm1(z[:, prefix:].mean(1, keepdim=True)))[0][:, :, 0]
        S = torch.einsum("bhd,bhnd->bhn", q_one, k[:, :, prefix:]) * attn.head_dim ** -0.5
    side = model.patch_embed.grid_size
    return S.reshape(*S.shape[:2], *side)


@pytest.mark.parametrize("name, query", VIT_FAMILIES + ROPE)
def test_maps_equal_the_last_blocks_weights_by_hand(name, query):
    model = build(name, query)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, S = model(x, return_maps=True)
    assert S.shape == (2, 2, 4, 4)
    torch.testing.assert_close(S, s_by_hand(model, x, query), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["vit_small_patch16_rope_224", "vit_small_patch16_rope_mixed_224"])
def test_rope_cls_attention_is_the_attention_the_block_softmaxed(name):
    """The attention the rotary block really used (read at its attn_drop) is the captured [CLS] attention."""
    model = build(name, "cls")
    seen = {}
    model.blocks[-1].attn.attn_drop.register_forward_hook(lambda module, args, out: seen.update(a=args[0]))
    with torch.no_grad():
        _, _, A = model(torch.randn(2, 3, 32, 32), return_maps=True, return_attention=True)
    torch.testing.assert_close(A.flatten(2), seen["a"][:, :, 0, 1:], atol=1e-6, rtol=1e-5)
    unrotated = build(name, "cls")
    unrotated.rope = None  # a different rope changes the answer: the test would notice a capture that ignored it
    assert not torch.allclose(s_by_hand(model, torch.ones(1, 3, 32, 32), "cls"),
                              s_by_hand(unrotated, torch.ones(1, 3, 32, 32), "cls"))


def test_mean_and_pooled_differ_and_cls_less_models_need_them():
    model = build("vit_base_patch16_gap_224", "mean")
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(s_by_hand(model, x, "mean"), s_by_hand(model, x, "pooled"))
    with pytest.raises(SarvitError, match="'cls' needs one, use 'mean' or 'pooled'"):
        create_model("vit_base_patch16_gap_224", **TINY)
    with pytest.raises(SarvitError, match="query must be one of"):
        create_model("vit_tiny_patch16_224", query="avg", **TINY)


@pytest.mark.parametrize("name, query", [("vit_base_patch16_gap_224", "pooled"), ("vit_small_patch16_rope_224", "mean")])
def test_sar_trains_and_round_trips_with_the_chosen_query(name, query, tmp_path):
    model = build(name, query).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(3):
        logits, S = model(x, return_maps=True)
        entropy = SpatialEntropyLoss()(S)
        loss = F.cross_entropy(logits, y) + entropy
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert model.blocks[-1].attn.qkv.weight.grad.abs().sum() > 0
    spec = ModelSpec.of(model)
    assert spec.sar["query"] == query
    rebuilt = spec.build()
    rebuilt.load_state_dict(model.state_dict())
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False).eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, return_maps=True)[1], model(x, return_maps=True)[1])
