"""PVT-v2 and Swin (timm's CLS-less pyramids): S from the last stage equals the last block's weights by hand, the
surgery is timm's block when switched off, Swin's window must cover the last-stage grid, training and checkpoints."""
import pytest
import timm
import torch
import torch.nn.functional as F

import sarvit
from sarvit.checkpoints.files import write_checkpoint
from sarvit.checkpoints.models import load_model
from sarvit.models import Capture, ModelSpec
from sarvit.models.pyramids import last_stage_blocks
from test_hybrids import train_with_sar

TINY = {  # 64 px: PVT-v2's last stage is 2x2 (stride 32); this 3-stage Swin's is 4x4 (stride 16) in one 4x4 window
    "pvt_v2_b0": dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 2), num_heads=(1, 1, 2, 2), num_classes=5),
    "swin_tiny_patch4_window7_224": dict(img_size=64, patch_size=4, embed_dim=16, depths=(1, 1, 2),
                                         num_heads=(1, 2, 2), window_size=4, num_classes=5),
}
GRID = {"pvt_v2_b0": (2, 2), "swin_tiny_patch4_window7_224": (4, 4)}
CASES = [(name, query) for name in TINY for query in ("mean", "pooled")]


def build(name, query, **extra):
    torch.manual_seed(0)
    model = sarvit.create_model(name, query=query, **{**TINY[name], **extra}).eval()
    for block in last_stage_blocks(model):
        block.attn.fused_attn = False  # the unfused path, so the attention it softmaxes can be read
    return model


def last_block_input(model, x):
    seen = {}
    handle = last_stage_blocks(model)[-1].register_forward_pre_hook(lambda module, args: seen.update(z=args[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["z"].reshape(x.shape[0], -1, seen["z"].shape[-1])  # Swin's NHWC input as tokens [B, N, C]


def q_and_k_by_hand(attn, h):
    """Per-head q and k [B, H, N, D] of normed tokens h [B, N, C], from the attention's own weights."""
    B, N, C = h.shape
    if hasattr(attn, "kv"):  # PVT-v2: q and kv linears, no spatial reduction in the last stage
        q = F.linear(h, attn.q.weight, attn.q.bias)
        k = F.linear(h, attn.kv.weight[:C], attn.kv.bias[:C])
    else:  # Swin: one qkv linear
        q, k = (F.linear(h, attn.qkv.weight[i * C:(i + 1) * C], attn.qkv.bias[i * C:(i + 1) * C]) for i in (0, 1))
    heads = lambda t: t.reshape(B, t.shape[1], attn.num_heads, -1).transpose(1, 2)  # noqa: E731
    return heads(q), heads(k)


def s_by_hand(model, x, query):
    block = last_stage_blocks(model)[-1]
    z = last_block_input(model, x)
    with torch.no_grad():
        q, k = q_and_k_by_hand(block.attn, block.norm1(z))
        if query == "mean":
            q_one = q.mean(2)
        else:  # the query of the mean input token, put through norm1 and the query projection
            q_one = q_and_k_by_hand(block.attn, block.norm1(z.mean(1, keepdim=True)))[0][:, :, 0]
        S = torch.einsum("bhd,bhnd->bhn", q_one, k) * q.shape[-1] ** -0.5  # 1 / sqrt(head width)
    return S.reshape(*S.shape[:2], *GRID[model.pretrained_cfg["architecture"]])


@pytest.mark.parametrize("name, query", CASES)
def test_maps_equal_the_last_blocks_weights_by_hand(name, query):
    model = build(name, query)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _, S, A = model(x, return_maps=True, return_attention=True)
    assert S.shape == (2, 2, *GRID[name])
    torch.testing.assert_close(S, s_by_hand(model, x, query), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(A, S.flatten(2).softmax(-1).reshape(S.shape))


@pytest.mark.parametrize("name", sorted(TINY))
def test_full_attention_is_the_one_the_block_used(name):
    """Captured A of each last-stage block = the softmax the block computed (Swin: with its relative position
    bias, which S leaves out: S is the pre-softmax q . k of a query that has no position)."""
    model = build(name, "mean")
    seen = {}
    for index, block in enumerate(last_stage_blocks(model)):
        site = block.attn.softmax if hasattr(block.attn, "softmax") else block.attn.attn_drop
        site.register_forward_hook(lambda m, args, out, index=index: seen.update({index: out}))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _, captured = model(x, capture=Capture(maps=True, attention_blocks=(0, -1)))
    for index in (0, 1):
        torch.testing.assert_close(captured["attention"][index], seen[index], atol=1e-6, rtol=1e-5)
    if name.startswith("swin"):
        bias = last_stage_blocks(model)[-1].attn._get_rel_pos_bias()
        assert bias.abs().max() > 0  # the bias is really there, and really not in S:
        torch.testing.assert_close(captured["maps"], s_by_hand(model, x, "mean"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(TINY))
def test_switched_off_surgery_is_timms_block(name):
    torch.manual_seed(0)
    theirs = timm.create_model(name, **TINY[name]).eval()
    ours = sarvit.create_model(name, sar=False, query="mean", **TINY[name]).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    sar = sarvit.create_model(name, query="mean", **TINY[name])
    assert not hasattr(last_stage_blocks(sar)[-1].norm2, "weight")  # SAR: no LayerNorm before the last MLP


def test_swin_window_must_cover_the_last_stage_grid():
    with torch.device("meta"):  # 224 px: a 7x7 last-stage grid in one 7x7 window, where timm shifts nothing
        plain = timm.create_model("swin_tiny_patch4_window7_224")
        assert isinstance(last_stage_blocks(sarvit.create_model("swin_tiny_patch4_window7_224", query="mean"))[-1],
                          sarvit.models.pyramids.SwinSARBlock)
    assert [(block.window_size, block.shift_size) for block in last_stage_blocks(plain)] == [((7, 7), (0, 0))] * 2
    with pytest.raises(sarvit.SarvitError, match=r"window_size: .* 14x14 grid in 7x7 windows"):
        with torch.device("meta"):
            sarvit.create_model("swin_tiny_patch4_window7_224", query="mean", img_size=448)
    with pytest.raises(sarvit.SarvitError, match="window_size: .* 8x8 grid in 4x4 windows"):
        sarvit.create_model("swin_tiny_patch4_window7_224", query="mean", **{**TINY["swin_tiny_patch4_window7_224"],
                                                                             "img_size": 128})
    with pytest.raises(sarvit.SarvitError, match="dynamic_img_size"):
        sarvit.create_model("swin_tiny_patch4_window7_224", query="mean", dynamic_img_size=True,
                            **TINY["swin_tiny_patch4_window7_224"])


def test_cls_and_reduced_keys_are_refused():
    for name in TINY:
        with pytest.raises(sarvit.SarvitError, match="has no \\[CLS\\] token"):
            sarvit.create_model(name, **TINY[name])
    with pytest.raises(sarvit.SarvitError, match="linear=False"):
        with torch.device("meta"):
            sarvit.create_model("pvt_v2_b2_li", query="mean")


@pytest.mark.parametrize("name, query", CASES)
def test_trains_and_round_trips(name, query, tmp_path):
    model = build(name, query).train()
    x = torch.randn(4, 3, 64, 64)
    loss = train_with_sar(model, x, torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(loss)
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0  # through the surgery to the first stage
    model.eval()
    spec = ModelSpec.of(model)
    assert spec.sar["query"] == query and ModelSpec.from_dict(spec.to_dict()) == spec
    rebuilt = spec.build().eval()
    rebuilt.load_state_dict(model.state_dict())
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False).eval()
    write_checkpoint(tmp_path / "last.pth", model.state_dict(), spec)  # a run's checkpoint file, read back as a run's
    from_file, info = load_model(tmp_path / "last.pth", device="cpu")
    assert info["source"] == "checkpoint" and info["sar"]["query"] == query
    with torch.no_grad():
        expected = model(x, return_maps=True)
        for other in (rebuilt, loaded, from_file):
            for mine, theirs in zip(expected, other(x, return_maps=True)):
                torch.testing.assert_close(theirs, mine)


@pytest.mark.parametrize("name", sorted(TINY))
def test_cosine_maps_are_unit_query_against_unit_keys(name):
    """Eq. 15 on a pyramid: S = <q / |q|, k / |k|>, no scale; here q is the mean patch query."""
    model = build(name, "mean", similarity="cosine")
    x = torch.randn(2, 3, 64, 64)
    block = last_stage_blocks(model)[-1]
    with torch.no_grad():
        _, S = model(x, return_maps=True)
        q, k = q_and_k_by_hand(block.attn, block.norm1(last_block_input(model, x)))
        expected = torch.einsum("bhd,bhnd->bhn", F.normalize(q.mean(2), dim=-1), F.normalize(k, dim=-1))
    torch.testing.assert_close(S, expected.reshape(S.shape), atol=1e-5, rtol=1e-5)
    assert S.abs().max() <= 1 + 1e-5
