"""The journal's hybrid VTs (T2T-ViT-14, PVT-Small, CvT-13): registered with timm, the papers' sizes, stage-by-stage shapes,
SAR's surgery and S equal to the last block's weights by hand, training with SAR, checkpoints round-trip."""
import pytest
import timm
import torch
import torch.nn.functional as F

import sarvit
from sarvit.models import ModelSpec
from test_query import s_by_hand

PAPER_PARAMETERS = {"t2t_vit_14": 21.5e6, "pvt_small": 24.5e6, "cvt_13": 20e6}  # T2T Tab. 2 (T2T-ViT_t-14); PVT, CvT Tab. 2
TINY = {"t2t_vit_14": dict(img_size=48, embed_dim=32, depth=2, num_heads=2, num_classes=5),
        "pvt_small": dict(img_size=96, embed_dim=32, depth=2, num_heads=2, num_classes=5)}
CVT = dict(img_size=96, embed_dim=48, depth=2, num_heads=2, num_classes=5)


def output_shapes(model, names, x):
    """The output shape of each named submodule on one forward of ``x`` (meta tensors: shapes only)."""
    shapes = {}
    modules = dict(model.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda m, a, out, name=name: shapes.update({name: tuple(out.shape)}))
    model(x)
    return shapes


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_parameter_count_is_the_papers(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    count = sum(p.numel() for p in model.parameters())
    print(f"{name}: {count / 1e6:.2f} M parameters (paper {PAPER_PARAMETERS[name] / 1e6:.1f} M)")
    assert abs(count / PAPER_PARAMETERS[name] - 1) < 0.02


def test_t2t_shapes_stage_by_stage():
    """T2T Fig. 4 at 224 px: 7x7/4 split -> 56x56 tokens of 3*49; T2T layer -> 64; 3x3/2 -> 28x28 of 64*9; ...;
    the last split 14x14 of 576, projected to 384; the backbone keeps [CLS] + 196 tokens."""
    with torch.device("meta"):
        model = timm.create_model("t2t_vit_14")
        shapes = output_shapes(model, ["patch_embed.layer1.norm1", "patch_embed.layer1", "patch_embed.layer2.norm1",
                                       "patch_embed.layer2", "patch_embed.project", "blocks.13", "head"],
                               torch.empty(2, 3, 224, 224))
    assert shapes == {"patch_embed.layer1.norm1": (2, 3136, 147), "patch_embed.layer1": (2, 3136, 64),
                      "patch_embed.layer2.norm1": (2, 784, 576), "patch_embed.layer2": (2, 784, 64),
                      "patch_embed.project": (2, 196, 384), "blocks.13": (2, 197, 384), "head": (2, 1000)}


def test_pvt_shapes_stage_by_stage():
    """PVT Tab. 1 at 224 px: strides 4, 8, 16, 32; widths 64, 128, 320, 512; SRA keys reduced 8, 4, 2, 1 times."""
    with torch.device("meta"):
        model = timm.create_model("pvt_small")
        shapes = output_shapes(model, ["patch_embed.stages.0", "patch_embed.stages.1", "patch_embed.stages.2",
                                       "patch_embed.stages.0.blocks.0.attn.kv", "patch_embed.stages.2.blocks.0.attn.kv",
                                       "patch_embed.proj", "blocks.2", "head"], torch.empty(2, 3, 224, 224))
    assert shapes == {"patch_embed.stages.0": (2, 64, 56, 56), "patch_embed.stages.1": (2, 128, 28, 28),
                      "patch_embed.stages.2": (2, 320, 14, 14), "patch_embed.stages.0.blocks.0.attn.kv": (2, 49, 128),
                      "patch_embed.stages.2.blocks.0.attn.kv": (2, 49, 640), "patch_embed.proj": (2, 49, 512),
                      "blocks.2": (2, 50, 512), "head": (2, 1000)}


def test_t2t_layer_is_the_papers_by_hand():
    """A T2T layer: single-head attention scaled by the input width, a skip from the values, then the MLP skip."""
    torch.manual_seed(0)
    layer = timm.create_model("t2t_vit_14", **TINY["t2t_vit_14"]).patch_embed.layer2.eval()
    x = torch.randn(2, 9, 576)
    h = layer.norm1(x)
    q, k, v = F.linear(h, layer.attn.qkv.weight).chunk(3, dim=-1)
    t = v + layer.attn.proj((q @ k.transpose(1, 2) / 576 ** 0.5).softmax(-1) @ v)
    torch.testing.assert_close(layer(x), t + layer.mlp(layer.norm2(t)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(TINY))
def test_sar_maps_equal_the_last_blocks_weights_and_training_works(name, tmp_path):
    torch.manual_seed(0)
    model = sarvit.create_model(name, **TINY[name])
    assert type(model.blocks[-1]).__name__ == "SARBlock" and not hasattr(model.blocks[-1].norm2, "weight")
    size = TINY[name]["img_size"]
    x, y = torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 3])
    model.eval()
    with torch.no_grad():
        _, S = model(x, return_maps=True)
    assert S.shape == (4, 2, 3, 3)
    torch.testing.assert_close(S, s_by_hand(model, x, "cls"), atol=1e-5, rtol=1e-5)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        logits, S = model(x, return_maps=True)
        loss = F.cross_entropy(logits, y) + 0.01 * sarvit.SpatialEntropyLoss()(S)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    stem = model.patch_embed  # the gradient reaches the first stage through the surgery
    first = stem.stages[0].blocks[0].attn.q if name == "pvt_small" else stem.layer1.attn.qkv
    assert first.weight.grad.abs().sum() > 0

    model.eval()
    rebuilt = ModelSpec.of(model).build().eval()
    rebuilt.load_state_dict(torch.load(_save(model.state_dict(), tmp_path / "state.pt"), weights_only=True))
    loaded = torch.load(_save(model, tmp_path / "model.pt"), weights_only=False).eval()
    with torch.no_grad():
        expected = model(x, return_maps=True)
        for other in (rebuilt, loaded):
            for mine, theirs in zip(expected, other(x, return_maps=True)):
                torch.testing.assert_close(theirs, mine)


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_wrong_sizes_are_refused():
    with pytest.raises(sarvit.SarvitError, match="overall stride of 16"):
        timm.create_model("t2t_vit_14", patch_size=8)
    with pytest.raises(sarvit.SarvitError, match="multiple of 32"):
        timm.create_model("pvt_small", img_size=100)
    with pytest.raises(sarvit.SarvitError, match="no pretrained weights"):
        timm.create_model("pvt_small", pretrained=True)


def test_cvt_shapes_stage_by_stage():
    """CvT Tab. 2 at 224 px: token embeddings of stride 4, 8, 16 (widths 64, 192, 384); the last stage attends from
    [CLS] + 196 queries to [CLS] + 49 squeezed keys (stride 2)."""
    with torch.device("meta"):
        model = timm.create_model("cvt_13")
        shapes = output_shapes(model, ["patch_embed.embeds.0", "patch_embed.embeds.1", "patch_embed.embeds.2",
                                       "blocks.9.attn.conv_q", "blocks.9.attn.conv_k", "blocks.9", "head"],
                               torch.empty(2, 3, 224, 224))
    assert shapes == {"patch_embed.embeds.0": (2, 3136, 64), "patch_embed.embeds.1": (2, 784, 192),
                      "patch_embed.embeds.2": (2, 196, 384), "blocks.9.attn.conv_q": (2, 196, 384),
                      "blocks.9.attn.conv_k": (2, 49, 384), "blocks.9": (2, 197, 384), "head": (2, 1000)}


@pytest.mark.parametrize("query", ["cls", "mean"])
def test_cvt_maps_are_the_squeezed_key_grid_by_hand(query, tmp_path):
    """S [B, H, 3, 3] at 96 px: the [CLS] (or mean) query against the stride-2 keys of the 6x6 token grid,
    computed from the last block's input and its conv projections."""
    torch.manual_seed(0)
    model = sarvit.create_model("cvt_13", query=query, **CVT).eval()
    x = torch.randn(2, 3, 96, 96)
    seen = {}
    handle = model.blocks[-1].register_forward_pre_hook(lambda module, args: seen.update(z=args[0]))
    with torch.no_grad():
        _, S = model(x, return_maps=True)
    handle.remove()
    with torch.no_grad():
        attn = model.blocks[-1].attn
        h = model.blocks[-1].norm1(seen["z"])
        fmap = h[:, 1:].transpose(1, 2).reshape(2, 48, 6, 6)
        keys = attn.proj_k(torch.cat([h[:, :1], attn.conv_k.bn(attn.conv_k.conv(fmap)).flatten(2).transpose(1, 2)], 1))
        queries = attn.proj_q(torch.cat([h[:, :1], attn.conv_q.bn(attn.conv_q.conv(fmap)).flatten(2).transpose(1, 2)], 1))
        q = queries[:, 0] if query == "cls" else queries[:, 1:].mean(1)
        heads = lambda t: t.reshape(*t.shape[:-1], 2, 24)  # noqa: E731
        expected = torch.einsum("bhd,bnhd->bhn", heads(q), heads(keys[:, 1:])) * 48 ** -0.5
    torch.testing.assert_close(S, expected.reshape(2, 2, 3, 3), atol=1e-5, rtol=1e-5)
    with pytest.raises(sarvit.SarvitError, match="'pooled' needs a linear query projection"):
        sarvit.create_model("cvt_13", query="pooled", **CVT)(x, return_maps=True)
    spec = ModelSpec.of(model)
    rebuilt = spec.build().eval()
    rebuilt.load_state_dict(model.state_dict())
    loaded = torch.load(_save(model, tmp_path / "model.pt"), weights_only=False).eval()
    with torch.no_grad():
        for other in (rebuilt, loaded):
            torch.testing.assert_close(other(x, return_maps=True)[1], S)


def train_with_sar(model, x: torch.Tensor, y: torch.Tensor, steps: int = 2) -> torch.Tensor:
    """``steps`` AdamW steps of cross-entropy + 0.01 * spatial entropy on one batch; the last loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        logits, S = model(x, return_maps=True)
        loss = F.cross_entropy(logits, y) + 0.01 * sarvit.SpatialEntropyLoss()(S)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss


def test_cvt_trains_with_sar():
    torch.manual_seed(0)
    model = sarvit.create_model("cvt_13", **CVT).train()
    loss = train_with_sar(model, torch.randn(4, 3, 96, 96), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(loss) and model.patch_embed.embeds[0].proj.weight.grad.abs().sum() > 0
